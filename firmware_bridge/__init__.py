"""firmware_bridge: the serial link between microcontrollers and nats-edge.

Sans-IO codecs (``codecs.get_codec``), the device-side client libraries (``micropython/``, ``c/``) and
a device simulator (``simulator.Simulator``). It never imports ``edge``.
"""
