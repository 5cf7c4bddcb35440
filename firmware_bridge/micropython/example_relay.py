"""Example: a MicroPython relay board on a gateway ``jsonl`` port, switched by a NATS request.

Wiring: board UART1 TX/RX to the gateway's USB-serial adapter, relay driver on GPIO 15. Gateway side::

    [[adapters.serial]]
    port = "/dev/serial/by-id/usb-...-if00"
    device = "relay7"
    codec = "jsonl"
    actions = ["relay", "toggle"]

Then ``nats req cmd.<gateway>.serial.relay7.relay '{"on": true}'`` answers
``{"ok":true,"result":{"relay":true}}``; every 10 s the board reports its state as a reading
(``dev.<gateway>.serial.relay7.relay``). On a ``nats``/``frames`` port use
``device_commands.serve_nats(nc, "relay7", HANDLERS)`` with nats_serial.NatsSerial instead.
"""

import machine  # MicroPython only
import utime
from device_commands import CommandFailed, JsonlDevice

DEVICE = "relay7"
pin = machine.Pin(15, machine.Pin.OUT)


def relay(args):
    on = args.get("on")
    if on is not True and on is not False:
        raise CommandFailed("bad_arguments", "'on' must be true or false")
    pin.value(1 if on else 0)
    return {"relay": on}


def toggle(args):
    pin.value(0 if pin.value() else 1)
    return {"relay": bool(pin.value())}


HANDLERS = {"relay": relay, "toggle": toggle}
dev = JsonlDevice(machine.UART(1, baudrate=115200), DEVICE, HANDLERS)
last = utime.ticks_ms()
while True:
    dev.poll()
    if utime.ticks_diff(utime.ticks_ms(), last) >= 10000:
        last = utime.ticks_ms()
        dev.reading({"relay": pin.value()})
    utime.sleep_ms(10)
