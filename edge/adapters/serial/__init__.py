"""The serial adapter: microcontrollers and instruments on a UART/USB-serial port become NATS publishers
and clients. See :mod:`edge.adapters.serial.adapter` (pyserial is imported only when a port is enabled).
"""
