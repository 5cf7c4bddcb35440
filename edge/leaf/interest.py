"""Interest bookkeeping for a leaf link, sans-IO (docs/nats-protocol.md sections 3.4-3.6).

:class:`LocalInterest` reference-counts the gateway's own subscriptions per key (``subject`` or
``subject queue``) and says which ``LS+``/``LS-`` line a change puts on the wire: plain keys on the
0->1 and 1->0 transitions; queue keys on every change, with the absolute member count as the weight,
and ``LS- subject queue`` when it reaches 0. :class:`HubInterest` stores what the hub advertised and
decides, per message, whether it goes upstream and which hub queue groups it names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from edge.core.sublist import SubscriptionIndex
from edge.protocol.encode import encode_ls_minus, encode_ls_plus
from edge.protocol.subjects import subject_matches

SubjectFilter = Callable[[bytes], bool]


def _allow_all(subject: bytes) -> bool:
    return True


class LocalInterest:
    """Reference counts of local subscriptions; computes the interest lines to send upstream.

    ``allowed(subject)`` filters what may be advertised (the hub's ``import`` permissions and the
    remote's ``deny_imports``); counts are kept for every key so a later permission change or a
    reconnect can re-sync the full set with :meth:`snapshot`.
    """

    __slots__ = ("_counts", "allowed")

    def __init__(self, allowed: SubjectFilter = _allow_all) -> None:
        self._counts: dict[tuple[bytes, bytes | None], int] = {}
        self.allowed = allowed

    def __len__(self) -> int:
        return len(self._counts)

    def add(self, subject: bytes, queue: bytes | None) -> bytes | None:
        """One more subscription on the key; returns the line to send, or None."""
        key = (subject, queue)
        n = self._counts.get(key, 0) + 1
        self._counts[key] = n
        if not self.allowed(subject):
            return None
        if queue is None:
            return encode_ls_plus(subject, None, 1) if n == 1 else None
        return encode_ls_plus(subject, queue, n)

    def remove(self, subject: bytes, queue: bytes | None) -> bytes | None:
        """One subscription fewer on the key; returns the line to send, or None (unknown key: None)."""
        key = (subject, queue)
        n = self._counts.get(key, 0)
        if n <= 0:
            return None
        n -= 1
        if n:
            self._counts[key] = n
        else:
            del self._counts[key]
        if not self.allowed(subject):
            return None
        if n == 0:
            return encode_ls_minus(subject, queue)
        return encode_ls_plus(subject, queue, n) if queue is not None else None

    def keys(self) -> list[tuple[bytes, bytes | None]]:
        return list(self._counts)

    def snapshot(self) -> Iterator[bytes]:
        """The full LS+ set for a fresh link (docs 3.6: initLeafNodeSmapAndSendSubs)."""
        for (subject, queue), n in self._counts.items():
            if self.allowed(subject):
                yield encode_ls_plus(subject, queue, n if queue is not None else 1)


class _HubKey:
    """A hub interest key stored in a subscription index (it only needs subject and queue)."""

    __slots__ = ("queue", "subject", "weight")

    def __init__(self, subject: bytes, queue: bytes | None, weight: int) -> None:
        self.subject = subject
        self.queue = queue
        self.weight = weight


class HubInterest:
    """The interest the hub advertised on the current link (reset on every reconnect)."""

    __slots__ = ("_index", "_keys")

    def __init__(self) -> None:
        self._index = SubscriptionIndex()
        self._keys: dict[tuple[bytes, bytes | None], _HubKey] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: tuple[bytes, bytes | None]) -> bool:
        return key in self._keys

    def weight(self, subject: bytes, queue: bytes | None) -> int:
        k = self._keys.get((subject, queue))
        return k.weight if k is not None else 0

    def add(self, subject: bytes, queue: bytes | None, weight: int) -> None:
        """LS+: a new key, or a new absolute weight for a queue key (docs 3.4, receiver rules)."""
        key = (subject, queue)
        k = self._keys.get(key)
        if k is not None:
            k.weight = weight
            return
        k = _HubKey(subject, queue, weight)
        self._keys[key] = k
        self._index.insert(k)

    def remove(self, subject: bytes, queue: bytes | None) -> None:
        """LS-: unknown keys are ignored."""
        k = self._keys.pop((subject, queue), None)
        if k is not None:
            self._index.remove(k)

    def clear(self) -> None:
        self._index = SubscriptionIndex()
        self._keys.clear()

    def route(self, subject: bytes, local_queues: list[Any]) -> list[bytes] | None:
        """Whether a local publish goes upstream: None = no; else the hub queue groups to name.

        Rule (docs 3.5): send when a plain hub key matches, or when a matching hub queue group with
        weight > 0 has no local member (``local_queues`` are the local match's queue groups, each with a
        ``name``); such groups are named in the message.
        """
        m = self._index.match(subject)
        if not m.plain and not m.queues:
            return None
        names: list[bytes] = []
        if m.queues:
            local = {g.name for g in local_queues if g.members} if local_queues else ()
            names.extend(g.name for g in m.queues if g.name not in local and any(k.weight > 0 for k in g.members))
        if not m.plain and not names:
            return None
        return names


def subject_filter(allow: list[bytes] | None, deny: list[bytes]) -> SubjectFilter:
    """A predicate for subscribe-style permission lists (patterns may contain wildcards).

    A wildcard interest subject is allowed when an allow pattern covers it (``foo.>`` covers ``foo.*``).
    """

    def covers(pattern: bytes, subject: bytes) -> bool:
        if pattern == subject or subject_matches(pattern, subject):
            return True
        # A wildcard subject is covered when the pattern matches every literal it could stand for.
        pt, st = pattern.split(b"."), subject.split(b".")
        for i, tok in enumerate(pt):
            if tok == b">":
                return len(st) > i
            if i >= len(st):
                return False
            if tok != b"*" and tok != st[i]:
                return False
            if tok == b"*" and st[i] == b">":
                return False
        return len(pt) == len(st)

    def check(subject: bytes) -> bool:
        if allow is not None and not any(covers(p, subject) for p in allow):
            return False
        return not any(subject_matches(p, subject) or covers(p, subject) for p in deny)

    return check
