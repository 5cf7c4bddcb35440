"""Per-user publish/subscribe permissions, with nats-server's semantics (server/client.go).

:class:`PermissionRules` is compiled once per configured user and shared by that user's connections;
:class:`ConnectionPermissions` is what a :class:`~edge.core.client.ClientConnection` holds in its
``permissions`` attribute: the shared rules plus the connection's own state for ``allow_responses``
(the reply subjects it has received). The client calls :meth:`ConnectionPermissions.can_publish` on
every PUB/HPUB and :meth:`ConnectionPermissions.can_subscribe` on every SUB, and sends the
'Permissions Violation' -ERR itself, keeping the connection open (client.go pubPermissionViolation,
subPermissionViolation).

Semantics copied from nats-server (docs/nats-protocol.md 4.4):

* An absent allow list allows everything; a present one (even empty) allows only what it matches.
  Deny wins over allow.
* A SUB subject is matched against the permission patterns as literal tokens (nats-server's
  ``Sublist.Match`` of the subscription subject), so ``SUB foo.*`` needs an allow entry such as
  ``foo.*`` or ``foo.>``; a queue entry ``"foo v1"`` restricts ``foo`` to queue group ``v1``.
* A wildcard subscription that covers a denied subject is allowed, but messages on denied
  subjects are not delivered to it (client.go loadMsgDenyFilter / checkDenySub).
* ``allow_responses`` turns the publish allow list into "nothing unless listed" when none was given
  and lets the connection publish ``max`` messages to each reply subject it received, for
  ``expires`` seconds (client.go addReplySubjectPerms / pruneReplyPerms).

Deliveries that need a per-message check (deny filter, reply tracking) go through a small
:class:`_FilteredDelivery` stand-in set as the subscription's ``conn``; the router's fast path for
every other subscriber is untouched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from edge.config.security import PermissionSettings, ResponsePermission, SubjectPermission
from edge.core.router import KIND_INTERNAL
from edge.protocol.encode import encode_hmsg, encode_msg

if TYPE_CHECKING:
    from edge.core.client import ClientConnection
    from edge.core.subscription import Subscription

# nats-server client.go: maxPermCacheSize (128) with pruning; ours is a plain bounded dict.
PERM_CACHE_SIZE: Final = 1024
# nats-server client.go replyPermLimit: reply subjects tracked per connection for allow_responses.
REPLY_PERM_LIMIT: Final = 4096

Pattern = tuple[tuple[bytes, ...], bytes | None]  # (subject tokens, queue or None)


def _compile(entries: tuple[str, ...] | None) -> list[Pattern] | None:
    if entries is None:
        return None
    out: list[Pattern] = []
    for entry in entries:
        subject, _, queue = entry.partition(" ")
        out.append((tuple(subject.encode().split(b".")), queue.strip().encode() or None))
    return out


def tokens_match(pattern: tuple[bytes, ...], tokens: list[bytes] | tuple[bytes, ...]) -> bool:
    """Does ``pattern`` (with ``*`` and ``>``) match ``tokens`` taken literally (wildcards included)?"""
    n = len(tokens)
    for i, p in enumerate(pattern):
        if p == b">":
            return n > i
        if i >= n:
            return False
        if p != b"*" and p != tokens[i]:
            return False
    return n == len(pattern)


def _queue_matches(queue: bytes, pattern: bytes) -> bool:
    return tokens_match(tuple(pattern.split(b".")), queue.split(b"."))


class PermissionRules:
    """One user's compiled permissions, shared by its connections. Immutable but for the caches."""

    __slots__ = (
        "_pub_cache",
        "deny_filter",
        "pub_allow",
        "pub_deny",
        "response",
        "sub_allow",
        "sub_deny",
    )

    def __init__(self, settings: PermissionSettings) -> None:
        pub = settings.publish
        self.response: ResponsePermission | None = settings.allow_responses
        if self.response is not None and (pub is None or pub.allow is None):
            # nats-server validateResponsePermissions: "We turn off the blanket allow statement."
            pub = SubjectPermission((), pub.deny if pub else ())
        self.pub_allow = _compile(pub.allow) if pub else None
        self.pub_deny = _compile(pub.deny) if pub else []
        sub = settings.subscribe
        self.sub_allow = _compile(sub.allow) if sub else None
        self.sub_deny = _compile(sub.deny) if sub else []
        # The plain (queue-less) deny patterns, for filtering deliveries to wildcard subscriptions.
        self.deny_filter = [p for p, q in (self.sub_deny or []) if q is None]
        self._pub_cache: dict[bytes, bool] = {}

    def publish_allowed(self, subject: bytes) -> bool:
        cached = self._pub_cache.get(subject)
        if cached is not None:
            return cached
        tokens = subject.split(b".")
        ok = True
        if self.pub_allow is not None:
            ok = any(tokens_match(p, tokens) for p, _ in self.pub_allow)
        if ok and self.pub_deny:
            ok = not any(tokens_match(p, tokens) for p, _ in self.pub_deny)
        if len(self._pub_cache) >= PERM_CACHE_SIZE:
            self._pub_cache.clear()
        self._pub_cache[subject] = ok
        return ok

    def subscribe_allowed(self, subject: bytes, queue: bytes | None) -> bool:
        """client.go canSubscribe: plain entries allow; queue entries, when they match, decide by queue."""
        tokens = subject.split(b".")
        allowed = True
        if self.sub_allow is not None:
            matched = [q for p, q in self.sub_allow if tokens_match(p, tokens)]
            allowed = any(q is None for q in matched)
            queues = [q for q in matched if q is not None]
            if queue and queues:
                allowed = any(_queue_matches(queue, q) for q in queues)
        if allowed and self.sub_deny:
            matched = [q for p, q in self.sub_deny if tokens_match(p, tokens)]
            allowed = not any(q is None for q in matched)
            queues = [q for q in matched if q is not None]
            if queue and queues:
                allowed = not any(_queue_matches(queue, q) for q in queues)
        return allowed

    def needs_deny_filter(self, subject: bytes) -> bool:
        """Does wildcard ``subject`` cover a denied subject (client.go subjectIsSubsetMatch)?"""
        if not self.deny_filter or (b"*" not in subject and b">" not in subject):
            return False
        sub_pattern = tuple(subject.split(b"."))
        return any(tokens_match(sub_pattern, p) or tokens_match(p, sub_pattern) for p in self.deny_filter)

    def delivery_denied(self, subject: bytes) -> bool:
        tokens = subject.split(b".")
        return any(tokens_match(p, tokens) for p in self.deny_filter)


class ConnectionPermissions:
    """A connection's permissions: the user's rules plus the reply subjects it may answer."""

    __slots__ = ("_clock", "conn", "replies", "reply_overflow", "response", "rules")

    def __init__(self, rules: PermissionRules, conn: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.rules = rules
        self.conn = conn
        self.response = rules.response
        # reply subject -> [messages published to it, expiry time]; insertion ordered, bounded.
        self.replies: dict[bytes, list[float]] = {}
        self.reply_overflow = 0
        self._clock = clock

    def can_publish(self, subject: bytes, reply: bytes | None) -> bool:
        if self.rules.publish_allowed(subject):
            return True
        if self.response is not None and self.replies:
            return self._use_reply(subject)
        return False

    def can_subscribe(self, subject: bytes, queue: bytes | None) -> bool:
        return self.rules.subscribe_allowed(subject, queue)

    # -- allow_responses ------------------------------------------------------------------------

    def record_reply(self, reply: bytes) -> None:
        """A message with ``reply`` was delivered to this connection: it may answer it."""
        resp = self.response
        if resp is None:
            return
        replies = self.replies
        now = self._clock()
        if reply not in replies and len(replies) >= REPLY_PERM_LIMIT:
            self._prune(now)
            if len(replies) >= REPLY_PERM_LIMIT:
                del replies[next(iter(replies))]
                self.reply_overflow += 1
        replies[reply] = [0, now + resp.expires]

    def _use_reply(self, subject: bytes) -> bool:
        entry = self.replies.get(subject)
        if entry is None:
            return False
        assert self.response is not None
        if self._clock() > entry[1]:
            del self.replies[subject]
            return False
        entry[0] += 1
        if entry[0] >= self.response.max_msgs:
            del self.replies[subject]
        return True

    def _prune(self, now: float) -> None:
        for key in [k for k, (_, exp) in self.replies.items() if exp < now]:
            del self.replies[key]

    # -- delivery -------------------------------------------------------------------------------

    def wrap(self, sub: Subscription) -> None:
        """Route ``sub``'s deliveries through a per-message check if this connection needs one."""
        filter_deny = self.rules.needs_deny_filter(sub.subject)
        if filter_deny or self.response is not None:
            sub.conn = _FilteredDelivery(sub.conn, self, filter_deny)


class _FilteredDelivery:
    """Stands in for a client connection as a subscription's ``conn``: checks, then writes the frame.

    The router calls :meth:`deliver` for non-client kinds; this writes the same MSG/HMSG bytes the
    router would (edge.protocol.encode) into the owner's outbound buffer, whose ``add_msg`` applies
    the same accounting and slow-consumer rule.
    """

    kind: Final = KIND_INTERNAL
    # The router skips a subscriber ``c`` when ``c is src and not c.echo``; this stand-in is never
    # ``src``: the router compares its ``owner`` with the publisher instead (echo=False honoured).
    echo: Final = True

    __slots__ = ("filter_deny", "owner", "perms")

    def __init__(self, owner: ClientConnection, perms: ConnectionPermissions, filter_deny: bool) -> None:
        self.owner = owner
        self.perms = perms
        self.filter_deny = filter_deny

    @property
    def closed(self) -> bool:
        return bool(self.owner.closed)

    @property
    def headers(self) -> bool:
        return bool(self.owner.headers)

    def deliver(self, sub: Subscription, subject: bytes, reply: bytes | None, hdr_len: int, data: bytes,
                src: Any = None) -> None:
        c = self.owner
        if c.closed:
            return
        if self.filter_deny and self.perms.rules.delivery_denied(subject):
            return
        if reply:
            self.perms.record_reply(reply)
        if hdr_len and c.headers:
            frame = encode_hmsg(subject, sub.sid, reply, hdr_len, data)
        else:
            frame = encode_msg(subject, sub.sid, reply, data[hdr_len:] if hdr_len else data)
        c.outbound.add_msg(frame, len(data))
        if c.closed:  # a slow consumer now
            return
        if sub.max_msgs and sub.delivered + 1 >= sub.max_msgs:
            c.remove_subscription(sub)
