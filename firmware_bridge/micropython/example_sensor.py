"""Example: a MicroPython sensor node publishing readings and answering commands over UART1.

Wiring: board UART1 TX/RX to the gateway's USB-serial adapter; gateway port configured with
codec "frames" (or "nats" with mode=MODE_NATS below).
"""

import machine  # MicroPython only
import utime
from nats_serial import MODE_FRAMES, NatsSerial

DEVICE = "node7"
uart = machine.UART(1, baudrate=115200)
nc = NatsSerial(uart, mode=MODE_FRAMES)
nc.connect(DEVICE)
led = machine.Pin("LED", machine.Pin.OUT)


def on_command(msg):
    # cmd.<gateway>.serial.node7.led with payload b"on"/b"off"; the reply confirms.
    led.value(msg.data == b"on")
    msg.respond(b"ok")


nc.subscribe("cmd.*.serial." + DEVICE + ".led", on_command)
adc = machine.ADC(4)  # RP2040 internal temperature sensor
last = utime.ticks_ms()
while True:
    nc.poll()
    if utime.ticks_diff(utime.ticks_ms(), last) >= 5000:
        last = utime.ticks_ms()
        volts = adc.read_u16() * 3.3 / 65535
        celsius = 27 - (volts - 0.706) / 0.001721  # RP2040 datasheet, section 4.9.5
        nc.publish("sensors." + DEVICE + ".temperature", f'{{"value":{celsius:.2f},"unit":"°C"}}')
    utime.sleep_ms(10)
