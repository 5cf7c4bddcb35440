"""The subscription index: a token trie with ``*``/``>`` children and a bounded match cache.

Theory of operation (after nats-server's sublist.go). Each subscription is stored at the trie node
reached by its subject's tokens; a node has literal children, one ``*`` child and one ``>`` child.
:meth:`SubscriptionIndex.match` walks the trie for a literal subject and returns a :class:`Match`:
the plain subscriptions, and the queue subscriptions grouped by queue name *across* all matching
nodes (so ``SUB foo.* q`` and ``SUB foo.bar q`` form one group ``q``, as in nats-server).

Results are cached per subject. Any insert or remove bumps :attr:`generation` and clears the cache,
which is bounded at :data:`CACHE_MAX` entries (nats-server's slCacheMax is 1024; the edge sees fewer,
hotter subjects, so we allow more and evict the oldest).

Pure code: no asyncio, no sockets. Subscriptions are any objects with ``subject`` and ``queue``
attributes (bytes, bytes | None).
"""

from __future__ import annotations

from typing import Any, Final

CACHE_MAX: Final = 4096

_PWC: Final = b"*"
_FWC: Final = b">"


class QueueGroup:
    """The members of one queue group in a match result, with a round-robin cursor."""

    __slots__ = ("members", "name", "next")

    def __init__(self, name: bytes, members: list[Any]) -> None:
        self.name = name
        self.members = members
        self.next = 0

    def pick(self) -> Any:
        """Next member, round robin: spreads messages evenly across members."""
        members = self.members
        i = self.next
        if i >= len(members):
            i = 0
        self.next = i + 1
        return members[i]


class Match:
    """The subscriptions a subject matches: ``plain`` and one :class:`QueueGroup` per queue name.

    ``head`` is scratch space for the router: the ``MSG <subject> `` prefix, built once per cached
    subject rather than once per message.
    """

    __slots__ = ("head", "plain", "queues")

    def __init__(self, plain: list[Any], queues: list[QueueGroup]) -> None:
        self.plain = plain
        self.queues = queues
        self.head: bytes | None = None

    @property
    def empty(self) -> bool:
        return not self.plain and not self.queues


EMPTY_MATCH: Final = Match([], [])


class _Node:
    __slots__ = ("fwc", "literal", "plain", "pwc", "queues")

    def __init__(self) -> None:
        self.literal: dict[bytes, _Node] = {}
        self.pwc: _Node | None = None
        self.fwc: _Node | None = None
        self.plain: list[Any] = []
        self.queues: dict[bytes, list[Any]] = {}

    def is_empty(self) -> bool:
        return not (self.literal or self.pwc or self.fwc or self.plain or self.queues)


class SubscriptionIndex:
    """Token trie of subscriptions with a generation-invalidated match cache."""

    __slots__ = ("_cache", "_root", "cache_hits", "count", "generation", "inserts", "matches", "removes")

    def __init__(self) -> None:
        self._root = _Node()
        self._cache: dict[bytes, Match] = {}
        self.count = 0
        self.generation = 0
        self.inserts = 0
        self.removes = 0
        self.matches = 0
        self.cache_hits = 0

    def __len__(self) -> int:
        return self.count

    @property
    def cache_size(self) -> int:
        return len(self._cache)

    def insert(self, sub: Any) -> None:
        """Add a subscription; its subject must be valid (see edge.protocol.subjects)."""
        node = self._root
        for tok in sub.subject.split(b"."):
            if tok == _PWC:
                if node.pwc is None:
                    node.pwc = _Node()
                node = node.pwc
            elif tok == _FWC:
                if node.fwc is None:
                    node.fwc = _Node()
                node = node.fwc
            else:
                child = node.literal.get(tok)
                if child is None:
                    child = node.literal[tok] = _Node()
                node = child
        if sub.queue is None:
            node.plain.append(sub)
        else:
            node.queues.setdefault(sub.queue, []).append(sub)
        self.count += 1
        self.inserts += 1
        self._changed()

    def remove(self, sub: Any) -> bool:
        """Remove a subscription; returns False if it was not in the index."""
        path: list[tuple[_Node, bytes]] = []
        node: _Node | None = self._root
        for tok in sub.subject.split(b"."):
            assert node is not None
            path.append((node, tok))
            if tok == _PWC:
                node = node.pwc
            elif tok == _FWC:
                node = node.fwc
            else:
                node = node.literal.get(tok)
            if node is None:
                return False
        assert node is not None
        try:
            if sub.queue is None:
                node.plain.remove(sub)
            else:
                members = node.queues[sub.queue]
                members.remove(sub)
                if not members:
                    del node.queues[sub.queue]
        except (ValueError, KeyError):
            return False
        # Prune empty nodes so a churn of unique subjects (inboxes) does not grow the trie.
        while path and node.is_empty():
            parent, tok = path.pop()
            if tok == _PWC:
                parent.pwc = None
            elif tok == _FWC:
                parent.fwc = None
            else:
                del parent.literal[tok]
            node = parent
        self.count -= 1
        self.removes += 1
        self._changed()
        return True

    def _changed(self) -> None:
        self.generation += 1
        if self._cache:
            self._cache.clear()

    def match(self, subject: bytes) -> Match:
        """Everything that a message published on the literal ``subject`` must reach."""
        m = self._cache.get(subject)
        self.matches += 1
        if m is not None:
            self.cache_hits += 1
            return m
        plain: list[Any] = []
        queues: dict[bytes, list[Any]] = {}
        self._collect(self._root, subject.split(b"."), 0, plain, queues)
        if plain or queues:
            m = Match(plain, [QueueGroup(name, members) for name, members in queues.items()])
        else:
            m = EMPTY_MATCH
        cache = self._cache
        if len(cache) >= CACHE_MAX:
            del cache[next(iter(cache))]
        cache[subject] = m
        return m

    def _collect(
        self, node: _Node, tokens: list[bytes], i: int, plain: list[Any], queues: dict[bytes, list[Any]]
    ) -> None:
        n = len(tokens)
        while True:
            if node.fwc is not None and i < n:
                _add(node.fwc, plain, queues)
            if i == n:
                _add(node, plain, queues)
                return
            if node.pwc is not None:
                self._collect(node.pwc, tokens, i + 1, plain, queues)
            nxt = node.literal.get(tokens[i])
            if nxt is None:
                return
            node = nxt
            i += 1

    def all(self) -> list[Any]:
        """Every subscription, in no particular order (for monitoring and interest sync)."""
        out: list[Any] = []
        stack = [self._root]
        while stack:
            node = stack.pop()
            out.extend(node.plain)
            for members in node.queues.values():
                out.extend(members)
            stack.extend(node.literal.values())
            if node.pwc is not None:
                stack.append(node.pwc)
            if node.fwc is not None:
                stack.append(node.fwc)
        return out


def _add(node: _Node, plain: list[Any], queues: dict[bytes, list[Any]]) -> None:
    if node.plain:
        plain.extend(node.plain)
    for name, members in node.queues.items():
        existing = queues.get(name)
        if existing is None:
            queues[name] = list(members)
        else:
            existing.extend(members)
