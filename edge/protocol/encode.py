"""Pure encoders for every frame the broker writes (docs/nats-protocol.md sections 1 and 3).

Each function returns the exact bytes nats-server puts on the wire for that frame; none keeps state
or touches a socket. Where the router needs a frame in parts (a ``MSG`` goes to many subscribers and
only the sid differs), the parts are encoded here too: ``msg_head(subject) + sid + msg_tail(reply,
payload)`` is :func:`encode_msg`, byte for byte. The router applies the ``*_HEAD``/``*_TAIL`` formats
below inline (``%``), which saves a function call per message on the hot path; the functions here use
the same formats, so the bytes still have one definition.

Client side (server → client): ``MSG``, ``HMSG``, ``INFO``, ``-ERR``, ``+OK``, ``PING``, ``PONG``.
Leaf side (gateway → hub): ``LMSG``, leaf ``HMSG`` (with the hub's queue groups), ``LS+``, ``LS-``,
``CONNECT``, ``PING``, ``PONG``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

__all__ = [
    "CRLF",
    "HMSG_HEAD",
    "HMSG_TAIL",
    "HMSG_TAIL_REPLY",
    "MSG_HEAD",
    "MSG_TAIL",
    "MSG_TAIL_REPLY",
    "OK",
    "PING",
    "PONG",
    "encode_connect",
    "encode_err",
    "encode_hmsg",
    "encode_info",
    "encode_lmsg",
    "encode_ls_minus",
    "encode_ls_plus",
    "encode_msg",
    "hmsg_head",
    "hmsg_tail",
    "msg_head",
    "msg_tail",
]

CRLF: Final = b"\r\n"
OK: Final = b"+OK\r\n"
PING: Final = b"PING\r\n"
PONG: Final = b"PONG\r\n"

# MSG <subject> <sid> [reply] <size>\r\n<payload>\r\n, as head % subject, the sid, tail % (...).
MSG_HEAD: Final = b"MSG %b "
MSG_TAIL: Final = b" %d\r\n%b\r\n"  # % (size, payload)
MSG_TAIL_REPLY: Final = b" %b %d\r\n%b\r\n"  # % (reply, size, payload)
# HMSG <subject> <sid> [reply] <header size> <total size>\r\n<headers+payload>\r\n
HMSG_HEAD: Final = b"HMSG %b "
HMSG_TAIL: Final = b" %d %d\r\n%b\r\n"  # % (header size, total size, data)
HMSG_TAIL_REPLY: Final = b" %b %d %d\r\n%b\r\n"  # % (reply, header size, total size, data)


# -- MSG / HMSG to a client, in the parts the router shares between subscribers --------------------


def msg_head(subject: bytes) -> bytes:
    """``MSG <subject> `` (shared by every message on the subject)."""
    return MSG_HEAD % subject


def msg_tail(reply: bytes | None, payload: bytes) -> bytes:
    """`` [reply] <size>\\r\\n<payload>\\r\\n`` (shared by every subscriber of one message)."""
    if reply:
        return MSG_TAIL_REPLY % (reply, len(payload), payload)
    return MSG_TAIL % (len(payload), payload)


def hmsg_head(subject: bytes) -> bytes:
    """``HMSG <subject> ``."""
    return HMSG_HEAD % subject


def hmsg_tail(reply: bytes | None, hdr_len: int, data: bytes) -> bytes:
    """`` [reply] <header size> <total size>\\r\\n<headers+payload>\\r\\n``."""
    if reply:
        return HMSG_TAIL_REPLY % (reply, hdr_len, len(data), data)
    return HMSG_TAIL % (hdr_len, len(data), data)


def encode_msg(subject: bytes, sid: bytes, reply: bytes | None, payload: bytes) -> bytes:
    """``MSG <subject> <sid> [reply] <size>\\r\\n<payload>\\r\\n``."""
    return msg_head(subject) + sid + msg_tail(reply, payload)


def encode_hmsg(subject: bytes, sid: bytes, reply: bytes | None, hdr_len: int, data: bytes) -> bytes:
    """``HMSG <subject> <sid> [reply] <hdr size> <total size>\\r\\n<data>\\r\\n``; ``data`` holds the
    ``hdr_len`` header bytes, then the payload."""
    return hmsg_head(subject) + sid + hmsg_tail(reply, hdr_len, data)


# -- leaf messages and interest (gateway -> hub, docs 3.4 and 3.5) ---------------------------------


def encode_lmsg(subject: bytes, reply: bytes | None, queues: Sequence[bytes], hdr_len: int, data: bytes) -> bytes:
    """A message to the hub: ``LMSG`` or, with headers (``hdr_len`` > 0), ``HMSG``, in the leaf form.

    With queue groups the reply slot is ``+ <reply>`` or ``|`` and the groups follow:
    ``LMSG <subject> [+ <reply> | |] [<queue> ...] <size>\\r\\n<payload>\\r\\n`` (docs 3.5).
    """
    if queues:
        mid = (b" + " + reply + b" " if reply else b" | ") + b" ".join(queues) + b" "
    elif reply:
        mid = b" " + reply + b" "
    else:
        mid = b" "
    if hdr_len:
        return b"HMSG %b%b%d %d\r\n%b\r\n" % (subject, mid, hdr_len, len(data), data)
    return b"LMSG %b%b%d\r\n%b\r\n" % (subject, mid, len(data), data)


def encode_ls_plus(subject: bytes, queue: bytes | None, weight: int) -> bytes:
    """``LS+ <subject>`` or ``LS+ <subject> <queue> <weight>`` (the queue's member count)."""
    if queue is None:
        return b"LS+ " + subject + b"\r\n"
    return b"LS+ %b %b %d\r\n" % (subject, queue, weight)


def encode_ls_minus(subject: bytes, queue: bytes | None) -> bytes:
    """``LS- <subject> [queue]``."""
    if queue is None:
        return b"LS- " + subject + b"\r\n"
    return b"LS- " + subject + b" " + queue + b"\r\n"


# -- JSON and text frames ----------------------------------------------------------------------------


def encode_info(info: dict[str, Any]) -> bytes:
    """``INFO {json} \\r\\n``: compact JSON and the space before CRLF, as nats-server's generateInfoJSON."""
    return b"INFO " + json.dumps(info, separators=(",", ":")).encode() + b" \r\n"


def encode_connect(options: dict[str, Any]) -> bytes:
    """``CONNECT {json}\\r\\n`` (the leaf link's handshake)."""
    return b"CONNECT " + json.dumps(options, separators=(",", ":")).encode() + b"\r\n"


def encode_err(text: str) -> bytes:
    """``-ERR '<text>'\\r\\n``."""
    return b"-ERR '" + text.encode() + b"'\r\n"
