"""MQTT topic <-> NATS subject conversion: every row of nats-server's tables (server/mqtt_test.go
TestMQTTTopicAndSubjectConversion and TestMQTTFilterConversion), the refused characters, and the inverse."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.protocol.mqtt_topics import (
    TopicError,
    filter_subjects,
    filter_to_subject,
    is_valid_filter,
    reserved_wildcard,
    subject_to_topic,
    topic_to_subject,
)

# (MQTT topic name, NATS subject): nats-server's table, row by row.
TOPICS = [
    ("/", "/./"), ("//", "/././"), ("///", "/./././"), ("////", "/././././"), ("foo", "foo"),
    ("/foo", "/.foo"), ("//foo", "/./.foo"), ("///foo", "/././.foo"), ("///foo/", "/././.foo./"),
    ("///foo//", "/././.foo././"), ("///foo///", "/././.foo./././"), ("//.foo.//", "/././/foo//././"),
    ("foo/bar", "foo.bar"), ("/foo/bar", "/.foo.bar"), ("/foo/bar/", "/.foo.bar./"),
    ("foo/bar/baz", "foo.bar.baz"), ("/foo/bar/baz", "/.foo.bar.baz"), ("/foo/bar/baz/", "/.foo.bar.baz./"),
    ("bar/", "bar./"), ("bar//", "bar././"), ("bar///", "bar./././"), ("foo//bar", "foo./.bar"),
    ("foo///bar", "foo././.bar"), ("foo////bar", "foo./././.bar"), (".", "//"), ("..", "////"),
    ("...", "//////"), ("./", "//./"), (".//.", "//././/"), ("././.", "//.//.//"), ("././/.", "//.//././/"),
    (".foo", "//foo"), ("foo.", "foo//"), (".foo.", "//foo//"), ("foo../bar/", "foo////.bar./"),
    ("foo../bar/.", "foo////.bar.//"), ("/foo/", "/.foo./"), ("./foo/.", "//.foo.//"),
    ("foo.bar/baz", "foo//bar.baz"),
]

# (topic, the text nats-server's error contains): refused the same way.
REFUSED = [("foo/+", "wildcards"), ("foo/#", "wildcards"), ("foo bar", "not supported"),
           ("foo\x7fbar", "not supported"), ("foo\tbar", "not supported"), ("foo\nbar", "not supported")]

FILTERS = [
    ("+", "*"), ("/+", "/.*"), ("+/", "*./"), ("/+/", "/.*./"), ("foo/+", "foo.*"), ("foo/+/", "foo.*./"),
    ("foo/+/bar", "foo.*.bar"), ("foo/+/+", "foo.*.*"), ("foo/+/+/", "foo.*.*./"), ("foo/+/+/bar", "foo.*.*.bar"),
    ("foo//+", "foo./.*"), ("foo//+/", "foo./.*./"), ("foo//+//", "foo./.*././"), ("foo//+//bar", "foo./.*./.bar"),
    ("foo///+///bar", "foo././.*././.bar"), ("foo.bar///+///baz", "foo//bar././.*././.baz"),
    ("#", ">"), ("/#", "/.>"), ("/foo/#", "/.foo.>"), ("foo/#", "foo.>"), ("foo//#", "foo./.>"),
    ("foo///#", "foo././.>"), ("foo/bar/#", "foo.bar.>"), ("foo/bar.baz/#", "foo.bar//baz.>"),
    # NATS wildcards in an MQTT filter are not escaped.
    ("foo*/bar", "foo*.bar"), ("foo>/bar", "foo>.bar"), ("foo/*/bar", "foo.*.bar"), ("foo/*/bar/*", "foo.*.bar.*"),
    ("foo/>", "foo.>"), ("foo/*/bar/>", "foo.*.bar.>"),
]


@pytest.mark.parametrize(("topic", "subject"), TOPICS, ids=[t for t, _ in TOPICS])
def test_topic_converts_as_nats_server_and_back(topic: str, subject: str) -> None:
    assert topic_to_subject(topic.encode()) == subject.encode()
    assert subject_to_topic(subject.encode()) == topic.encode()


@pytest.mark.parametrize(("topic", "error"), REFUSED, ids=[t for t, _ in REFUSED])
def test_refused_topics(topic: str, error: str) -> None:
    with pytest.raises(TopicError, match=error):
        topic_to_subject(topic.encode())


def test_an_empty_topic_is_refused() -> None:
    with pytest.raises(TopicError):
        topic_to_subject(b"")


@pytest.mark.parametrize(("topic_filter", "subject"), FILTERS, ids=[f for f, _ in FILTERS])
def test_filter_converts_as_nats_server(topic_filter: str, subject: str) -> None:
    assert filter_to_subject(topic_filter.encode()) == subject.encode()


def test_a_multi_level_filter_also_subscribes_its_parent_level() -> None:
    assert filter_subjects(b"a/#") == (b"a.>", b"a")
    assert filter_subjects(b"a/b/#") == (b"a.b.>", b"a.b")
    assert filter_subjects(b"#") == (b">",)
    assert filter_subjects(b"a/+") == (b"a.*",)


@pytest.mark.parametrize(("topic_filter", "valid"), [
    ("#", True), ("a/#", True), ("+/a/+", True), ("a/#/b", False), ("a#", False), ("a/b+", False), ("+a", False),
])
def test_wildcard_placement(topic_filter: str, valid: bool) -> None:
    assert is_valid_filter(topic_filter.encode()) is valid


def test_reserved_wildcards_are_those_starting_with_a_wildcard() -> None:
    assert [reserved_wildcard(s) for s in (b">", b"*", b"*.a", b"a.>", b"$SYS.>")] == [True, True, True, False, False]


_TOPIC = st.text(alphabet=st.characters(blacklist_characters="+#\x00 \t\n\r\f\x7f", blacklist_categories=("Cs",)),
                 min_size=1, max_size=40)


@given(_TOPIC)
def test_every_topic_name_round_trips(topic: str) -> None:
    raw = topic.encode()
    subject = topic_to_subject(raw)
    assert subject_to_topic(subject) == raw
    assert not any(c in subject for c in b" \t\r\n")
