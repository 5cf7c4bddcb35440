"""Device-side MicroPython modules. Copy ``nats_serial.py`` to the board; it also runs under CPython."""
