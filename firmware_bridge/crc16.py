"""CRC-16/CCITT-FALSE, the integrity check inside every firmware frame.

Parameters (Rocksoft/Williams model; the reveng catalogue lists this CRC as CRC-16/IBM-3740, alias
CRC-16/CCITT-FALSE): width 16, poly 0x1021, init 0xFFFF, refin false, refout false, xorout 0x0000,
check 0x29B1 (the CRC of ASCII "123456789"), residue 0x0000. The C library (c/nats_serial.c) and the
MicroPython module compute the same function bit by bit; this module uses a 256-entry table.
"""

from __future__ import annotations

from typing import Final

__all__ = ["CRC16_CHECK", "crc16_ccitt_false"]

CRC16_POLY: Final = 0x1021
CRC16_INIT: Final = 0xFFFF
# The catalogue's check value: crc16_ccitt_false(b"123456789") == 0x29B1.
CRC16_CHECK: Final = 0x29B1


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ CRC16_POLY) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


_TABLE: Final = _make_table()


def crc16_ccitt_false(data: bytes | bytearray | memoryview, crc: int = CRC16_INIT) -> int:
    """Return the CRC-16/CCITT-FALSE of ``data``; pass a previous result as ``crc`` to continue."""
    table = _TABLE
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ b]
    return crc
