"""Consistent Overhead Byte Stuffing (COBS).

Reference: S. Cheshire and M. Baker, "Consistent Overhead Byte Stuffing", IEEE/ACM Transactions on
Networking 7(2), 1999. The encoded form contains no 0x00 byte, so 0x00 can delimit frames on a byte
stream; the overhead is at most 1 byte per 254 bytes (+1). Each block is a code byte n (1..255)
followed by n-1 non-zero data bytes; a block with n < 255 stands for its data followed by a zero,
except at the very end of the frame. The encoder follows the paper's StuffData exactly (including the
trailing 0x01 block after a final run of exactly 254 non-zero bytes), so the Python, C and MicroPython
encoders produce identical bytes.
"""

from __future__ import annotations

__all__ = ["CobsDecodeError", "cobs_decode", "cobs_encode"]


class CobsDecodeError(ValueError):
    """The input is not a valid COBS encoding (a zero byte, or a block running past the end)."""


def cobs_encode(data: bytes | bytearray | memoryview) -> bytes:
    """Return the COBS encoding of ``data`` (no trailing delimiter)."""
    out = bytearray()
    for piece in bytes(data).split(b"\x00"):
        # Runs of 254 non-zero bytes get code 0xFF (no implied zero), as in the paper's StuffData.
        while len(piece) >= 254:
            out.append(0xFF)
            out += piece[:254]
            piece = piece[254:]
        out.append(len(piece) + 1)
        out += piece
    return bytes(out)


def cobs_decode(encoded: bytes | bytearray | memoryview) -> bytes:
    """Decode one COBS frame (without its 0x00 delimiter).

    Raises:
        CobsDecodeError: a 0x00 inside the frame, or a code byte pointing past the end.
    """
    enc = bytes(encoded)
    out = bytearray()
    i = 0
    n = len(enc)
    while i < n:
        code = enc[i]
        end = i + code
        if code == 0 or end > n:
            raise CobsDecodeError("zero byte in frame" if code == 0 else "block runs past end of frame")
        block = enc[i + 1 : end]
        if 0 in block:
            raise CobsDecodeError("zero byte in frame")
        out += block
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)
