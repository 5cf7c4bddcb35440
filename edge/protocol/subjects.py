"""Subject validity rules, as nats-server's sublist.go applies them (docs/nats-protocol.md section 2).

Tokens are separated by ``.``; empty tokens and whitespace are invalid; ``*`` and ``>`` are wildcards
only as whole tokens, and ``>`` only as the last token. Subjects are bytes on the hot path.
"""

from __future__ import annotations

import re
from typing import Final

# Whitespace nats-server never allows in a subject, plus NUL (isValidSubject's rune checks).
_BAD_CHARS: Final = re.compile(rb"[ \t\r\n\f\x00]")

# Names we put into subjects (gateway, adapter, device, channel) are cut to this many characters.
MAX_TOKEN: Final = 64
# What cannot be inside one token: whitespace, the separator, the wildcards, control characters.
_BAD_TOKEN_CHARS: Final = re.compile(r"[\s.*>\x00-\x1f\x7f]+")


# Reply prefixes nats-server reserves (service-import replies, JetStream acks, gateway replies); a
# client publishing with one gets 'Permissions Violation for Publish with Reply of ...' (isReservedReply).
RESERVED_REPLY_PREFIXES: Final = (b"_R_.", b"$JS.ACK.", b"_GR_.")


# Subject prefixes of gateway-routed replies (current and old form): clients may not publish to them
# (nats-server hasGWRoutedReplyPrefix -> 'Permissions Violation for Publish to ...').
RESERVED_SUBJECT_PREFIXES: Final = (b"_GR_.", b"$GR.")
# First bytes of the reserved subject and reply prefixes: the parser's fast path hands a message with
# such a subject or reply to the connection's full checks (an ``_INBOX.`` response is one of them).
RESERVED_FIRST: Final = frozenset(p[0] for p in RESERVED_REPLY_PREFIXES + RESERVED_SUBJECT_PREFIXES)


def is_reserved_subject(subject: bytes) -> bool:
    return any(subject.startswith(p) and len(subject) > len(p) for p in RESERVED_SUBJECT_PREFIXES)


def is_reserved_reply(reply: bytes) -> bool:
    """``reply`` starts with a reserved prefix and has something after it (as nats-server checks)."""
    return any(reply.startswith(p) and len(reply) > len(p) for p in RESERVED_REPLY_PREFIXES)


def is_valid_subject(subject: bytes) -> bool:
    """A subscribe subject: wildcards allowed, ``>`` only as the last token."""
    if not subject or _BAD_CHARS.search(subject):
        return False
    tokens = subject.split(b".")
    last = len(tokens) - 1
    for i, tok in enumerate(tokens):
        if not tok or (tok == b">" and i != last):
            return False
    return _is_utf8(subject)


def is_valid_literal_subject(subject: bytes) -> bool:
    """A publish subject as pedantic mode checks it: valid, and no wildcard tokens."""
    if not is_valid_subject(subject):
        return False
    return all(tok not in (b"*", b">") for tok in subject.split(b"."))


def is_literal(subject: bytes) -> bool:
    """True if the (valid) subject has no wildcard token."""
    if b"*" not in subject and b">" not in subject:
        return True
    return all(tok not in (b"*", b">") for tok in subject.split(b"."))


def is_valid_queue(queue: bytes) -> bool:
    return bool(queue) and not _BAD_CHARS.search(queue) and _is_utf8(queue)


def subject_matches(pattern: bytes, subject: bytes) -> bool:
    """Whether a literal subject matches a (possibly wildcard) pattern. For config filters, not the hot path."""
    pt = pattern.split(b".")
    st = subject.split(b".")
    for i, tok in enumerate(pt):
        if tok == b">":
            return len(st) > i
        if i >= len(st):
            return False
        if tok != b"*" and tok != st[i]:
            return False
    return len(pt) == len(st)


def sanitize_token(text: str, fallback: str = "_") -> str:
    """``text`` as one valid subject token: each run of whitespace, ``.``, ``*``, ``>`` and control
    characters becomes ``_``; at most :data:`MAX_TOKEN` characters; ``fallback`` when empty. Anything
    else (``-``, ``:``, non-ASCII letters) is kept, so a name stays recognisable in its subject."""
    return _BAD_TOKEN_CHARS.sub("_", str(text))[:MAX_TOKEN] or fallback


def gateway_token(server_name: str) -> str:
    """The ``<gateway>`` token of every device subject (``dev.``/``evt.``/``cmd.<gateway>...``) and of
    ``edge.<gateway>.devices``: one function, so all of them name a gateway the same way."""
    return sanitize_token(server_name)


def _is_utf8(data: bytes) -> bool:
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
