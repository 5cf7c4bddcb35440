"""Unit tests of edge.security: permission matching (Hypothesis against a reference), the backoff map,
allow_responses bookkeeping, and the client parser under arbitrary bytes."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.config.security import PermissionSettings, ResponsePermission, SubjectPermission
from edge.protocol.errors import ProtocolError
from edge.protocol.parser import Parser
from edge.security.auth import AuthBackoff
from edge.security.permissions import ConnectionPermissions, PermissionRules, tokens_match

TOKENS = st.sampled_from(["a", "b", "foo", "*", ">"])


def reference(pattern: list[str], subject: list[str]) -> bool:
    rx = ""
    for i, p in enumerate(pattern):
        sep = r"\." if i else ""
        rx += sep + (r"[^.]+" if p == "*" else r".+" if p == ">" else re.escape(p))
    return re.fullmatch(rx, ".".join(subject)) is not None


@given(st.lists(TOKENS, min_size=1, max_size=5), st.lists(TOKENS, min_size=1, max_size=5))
def test_tokens_match_agrees_with_reference(pattern: list[str], subject: list[str]) -> None:
    if ">" in pattern[:-1]:
        return
    assert tokens_match(tuple(p.encode() for p in pattern), [s.encode() for s in subject]) == reference(
        pattern, subject)


def test_deny_wins_and_cache_is_bounded() -> None:
    rules = PermissionRules(PermissionSettings(SubjectPermission(("a.>",), ("a.b",)), None, None))
    assert rules.publish_allowed(b"a.c") and not rules.publish_allowed(b"a.b") and not rules.publish_allowed(b"x")
    for i in range(5000):
        rules.publish_allowed(b"a.%d" % i)
    assert len(rules._pub_cache) <= 1024


def test_allow_responses_counts_and_expires() -> None:
    now = [0.0]
    rules = PermissionRules(PermissionSettings(None, None, ResponsePermission(max_msgs=2, expires=1.0)))
    perms = ConnectionPermissions(rules, clock=lambda: now[0])
    assert not perms.can_publish(b"r.1", None)  # allow_responses turns publish into "only listed"
    perms.record_reply(b"r.1")
    perms.record_reply(b"r.2")
    assert perms.can_publish(b"r.1", None) and perms.can_publish(b"r.1", None)
    assert not perms.can_publish(b"r.1", None)  # max 2
    now[0] = 2.0
    assert not perms.can_publish(b"r.2", None)  # expired
    for i in range(5000):
        perms.record_reply(b"x.%d" % i)
    assert len(perms.replies) <= 4096 and perms.reply_overflow > 0


def test_backoff_blocks_doubles_and_is_bounded() -> None:
    now = [0.0]
    b = AuthBackoff(threshold=3, base=1.0, maximum=4.0, max_entries=10, clock=lambda: now[0])
    assert b.failure("1.1.1.1") == 0.0 and b.failure("1.1.1.1") == 0.0
    assert b.failure("1.1.1.1") == 1.0 and b.blocked_for("1.1.1.1") == 1.0
    assert b.failure("1.1.1.1") == 2.0 and b.failure("1.1.1.1") == 4.0 and b.failure("1.1.1.1") == 4.0
    now[0] = 10.0
    assert b.blocked_for("1.1.1.1") == 0.0
    b.success("1.1.1.1")
    assert "1.1.1.1" not in b.entries
    for i in range(100):
        b.failure(f"10.0.0.{i}")
    assert len(b.entries) == 10 and b.overflow == 90


class _Sink:
    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return lambda *a, **k: None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64) | st.sampled_from([b"PUB a 3\r\n", b"abc\r\n", b"SUB a 1\r\n",
                                                          b"HPUB a 2 3\r\n", b"CONNECT {}\r\n", b"\r\n"]),
                max_size=20))
def test_client_parser_raises_only_protocol_errors(chunks: list[bytes]) -> None:
    p = Parser(_Sink(), kind="client", max_control_line=256, max_payload=1024)
    try:
        for c in chunks:
            p.feed(c)
    except ProtocolError:
        pass
    assert p.buffered <= 256 + 1024 + 2 + 64
