"""MQTT topic names and filters <-> NATS subjects, exactly as nats-server converts them.

The rules (nats-server server/mqtt.go, documented on docs.nats.io "MQTT: Topics and subjects"):

* ``/`` is the level separator and becomes ``.``, except that an empty level must stay visible:
  a ``/`` that starts the topic, or follows an empty level, becomes ``/.``; a ``/`` that ends the topic
  or is followed by another ``/`` becomes ``./``. So ``/foo`` -> ``/.foo``, ``foo/`` -> ``foo./``,
  ``foo//bar`` -> ``foo./.bar``.
* ``.`` inside a level becomes ``//`` (``foo.bar/baz`` -> ``foo//bar.baz``).
* In a filter, ``+`` becomes ``*`` and ``#`` becomes ``>``; in a topic name they are refused. NATS
  wildcards typed into an MQTT filter are not escaped (``foo/*`` is the NATS subscription ``foo.*``).
* Whitespace and DEL are refused (they cannot travel in a NATS control line).

A filter ending in ``/#`` also matches its parent level (``a/#`` matches ``a``): :func:`filter_subjects`
returns the extra subject to subscribe to, as nats-server adds its "level up" subscription.
"""

from __future__ import annotations

from typing import Final

from edge.errors import EdgeError

_REFUSED: Final = frozenset(b" \t\n\r\f\x7f")
_SPECIAL: Final = frozenset(b"/.+# \t\n\r\f\x7f")


class TopicError(EdgeError, ValueError):
    """The topic or filter has no NATS subject (nats-server refuses it the same way)."""


def topic_to_subject(topic: bytes) -> bytes:
    """A PUBLISH topic name as a NATS subject; raises :class:`TopicError`."""
    return _convert(topic, wildcards=False)


def filter_to_subject(topic_filter: bytes) -> bytes:
    """A SUBSCRIBE topic filter as a NATS subscription subject; raises :class:`TopicError`."""
    return _convert(topic_filter, wildcards=True)


def filter_subjects(topic_filter: bytes) -> tuple[bytes, ...]:
    """The NATS subjects a filter subscribes to: its conversion, plus ``a`` for ``a/#`` (``a.>``)."""
    subject = filter_to_subject(topic_filter)
    if len(subject) > 2 and subject.endswith(b".>"):
        return subject, subject[:-2]
    return (subject,)


def _convert(topic: bytes, *, wildcards: bool) -> bytes:
    if not topic:
        raise TopicError("empty topic")
    if not _SPECIAL.intersection(topic):
        return topic
    if (b"." not in topic and topic[0] != 0x2F and topic[-1] != 0x2F and b"//" not in topic
            and not _REFUSED.intersection(topic) and (wildcards or (b"+" not in topic and b"#" not in topic))):
        # The common case: plain levels separated by single slashes.
        return topic.replace(b"/", b".").replace(b"+", b"*").replace(b"#", b">")
    out = bytearray()
    end = len(topic) - 1
    for i, c in enumerate(topic):
        if c == 0x2F:  # '/'
            if i == 0 or out[-1] == 0x2E:  # starts the topic, or an empty level came before
                out += b"/."
            elif i == end or topic[i + 1] == 0x2F:  # ends the topic, or an empty level follows
                out += b"./"
            else:
                out.append(0x2E)
        elif c == 0x2E:  # '.'
            out += b"//"
        elif c in _REFUSED:
            raise TopicError("whitespace or DEL in a topic is not supported")
        elif c == 0x2B or c == 0x23:  # '+', '#'
            if not wildcards:
                raise TopicError("wildcards are not allowed in a publish topic")
            out.append(0x2A if c == 0x2B else 0x3E)
        else:
            out.append(c)
    if out[-1] == 0x2E:
        out.append(0x2F)
    return bytes(out)


def subject_to_topic(subject: bytes) -> bytes:
    """A NATS subject (of a message) as the MQTT topic its subscribers see: the inverse conversion."""
    if b"/" not in subject:
        return subject.replace(b".", b"/")
    out = bytearray()
    i = 0
    n = len(subject)
    while i < n:
        c = subject[i]
        if c == 0x2F:  # '/': '/.' is a '/', '//' is a '.', a lone '/' is dropped (as nats-server)
            if i + 1 < n:
                nxt = subject[i + 1]
                if nxt == 0x2E:
                    out.append(0x2F)
                    i += 2
                    continue
                if nxt == 0x2F:
                    out.append(0x2E)
                    i += 2
                    continue
        elif c == 0x2E:
            out.append(0x2F)
        else:
            out.append(c)
        i += 1
    return bytes(out)


def is_valid_filter(topic_filter: bytes) -> bool:
    """MQTT's wildcard placement rules [MQTT-4.7.1-2/3]: ``#`` alone as the last level, ``+`` a whole level."""
    levels = topic_filter.split(b"/")
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if b"#" in level and (level != b"#" or i != last):
            return False
        if b"+" in level and level != b"+":
            return False
    return True


def reserved_wildcard(subject: bytes) -> bool:
    """A subscription starting with a wildcard, which must not receive ``$``-topics [MQTT-4.7.2-1]."""
    return subject in (b"*", b">") or subject.startswith(b"*.")
