"""The subscription index against a brute-force reference matcher."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.core.sublist import CACHE_MAX, SubscriptionIndex
from edge.protocol.subjects import is_valid_literal_subject, is_valid_subject, subject_matches


@dataclass(eq=False)
class Sub:
    subject: bytes
    queue: bytes | None = None


def names(subs: list[Sub]) -> set[bytes]:
    return {s.subject for s in subs}


def test_literal_and_wildcards() -> None:
    idx = SubscriptionIndex()
    subs = [Sub(b"a.b.c"), Sub(b"a.*.c"), Sub(b"a.>"), Sub(b"*.b.*"), Sub(b">"), Sub(b"a.b")]
    for s in subs:
        idx.insert(s)
    assert names(idx.match(b"a.b.c").plain) == {b"a.b.c", b"a.*.c", b"a.>", b"*.b.*", b">"}
    assert names(idx.match(b"a").plain) == {b">"}
    assert names(idx.match(b"a.b").plain) == {b"a.>", b">", b"a.b"}
    assert names(idx.match(b"x.y.z.w").plain) == {b">"}


def test_queue_groups_merge_across_subjects() -> None:
    idx = SubscriptionIndex()
    q1, q2, q3 = Sub(b"w.a", b"g"), Sub(b"w.*", b"g"), Sub(b"w.a", b"h")
    for s in (q1, q2, q3, Sub(b"w.a")):
        idx.insert(s)
    m = idx.match(b"w.a")
    groups = {g.name: g.members for g in m.queues}
    assert set(groups) == {b"g", b"h"}
    assert set(map(id, groups[b"g"])) == {id(q1), id(q2)}
    assert len(m.plain) == 1


def test_round_robin_spreads_evenly() -> None:
    idx = SubscriptionIndex()
    members = [Sub(b"q", b"g") for _ in range(4)]
    for s in members:
        idx.insert(s)
    group = idx.match(b"q").queues[0]
    picks = [group.pick() for _ in range(400)]
    assert all(picks.count(s) == 100 for s in members)


def test_cache_invalidated_by_changes_and_bounded() -> None:
    idx = SubscriptionIndex()
    s = Sub(b"c.*")
    idx.insert(s)
    assert len(idx.match(b"c.x").plain) == 1
    gen = idx.generation
    idx.remove(s)
    assert idx.generation == gen + 1
    assert idx.match(b"c.x").empty
    for i in range(CACHE_MAX + 100):
        idx.match(b"n.%d" % i)
    assert idx.cache_size <= CACHE_MAX


def test_remove_prunes_nodes_and_unknown_remove_is_false() -> None:
    idx = SubscriptionIndex()
    subs = [Sub(b"inbox.%d.x" % i) for i in range(100)]
    for s in subs:
        idx.insert(s)
    for s in subs:
        assert idx.remove(s)
    assert len(idx) == 0
    assert idx._root.is_empty()
    assert not idx.remove(Sub(b"inbox.1.x"))


token = st.sampled_from([b"a", b"b", b"c"])
pattern_token = st.sampled_from([b"a", b"b", b"c", b"*"])


@st.composite
def patterns(draw: st.DrawFn) -> bytes:
    toks = draw(st.lists(pattern_token, min_size=1, max_size=4))
    if draw(st.booleans()):
        toks.append(b">")
    return b".".join(toks)


@given(st.lists(patterns(), max_size=25), st.lists(st.lists(token, min_size=1, max_size=5), max_size=10))
@settings(max_examples=300, deadline=None)
def test_matches_reference(pats: list[bytes], subjects: list[list[bytes]]) -> None:
    idx = SubscriptionIndex()
    subs = [Sub(p) for p in pats]
    for s in subs:
        idx.insert(s)
    for toks in subjects:
        subject = b".".join(toks)
        expected = {id(s) for s in subs if subject_matches(s.subject, subject)}
        assert {id(s) for s in idx.match(subject).plain} == expected
    for s in subs[::2]:
        idx.remove(s)
    for toks in subjects:
        subject = b".".join(toks)
        expected = {id(s) for s in subs[1::2] if subject_matches(s.subject, subject)}
        assert {id(s) for s in idx.match(subject).plain} == expected


def test_subject_validity() -> None:
    for good in (b"a", b"a.b", b"a.*", b"*", b">", b"a.>", b"foo*", b"f>o.*bar"):
        assert is_valid_subject(good), good
    for bad in (b"", b".a", b"a.", b"a..b", b"a.>.b", b"a b", b"a\tb", b"a\x00", b"\xff\xfe"):
        assert not is_valid_subject(bad), bad
    assert is_valid_literal_subject(b"foo*.b")
    assert not is_valid_literal_subject(b"a.*")
    assert not is_valid_literal_subject(b"a.>")


def test_match_stats_count_the_routers_cache_hits() -> None:
    """The router looks the match cache up itself; its hits still count in the /subsz statistics."""
    from edge.core.router import Router

    idx = SubscriptionIndex()
    router = Router(idx, lambda: None)
    for _ in range(10):
        assert router.route(None, b"no.one.listens", None, 0, b"x") == 0
    assert router.match_stats() == (10, 9)  # one miss fills the cache, nine hits
    idx.match(b"no.one.listens")  # a direct match (e.g. /subsz?test=) counts too
    assert router.match_stats() == (11, 10)
    idx.insert(Sub(b"no.>"))  # clears the cache: the next lookup misses
    router.route(None, b"other", None, 0, b"x")
    assert router.match_stats() == (12, 10)
