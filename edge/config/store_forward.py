"""Schema of the ``[store_forward]`` table: which subjects go through the disk outbox, and its limits.

Example::

    [store_forward]
    subjects = ["telemetry.>", "evt.*.*.*.offline"]
    max_bytes = "256MB"        # disk used by the outbox (segment files + pending writes)
    max_msgs = 1000000         # records not yet confirmed by the hub
    max_age = "7d"             # older records are dropped (counted); 0 = keep forever
    full_policy = "drop_oldest"   # or "reject_new"
    fsync_interval = "100ms"   # group commit: fsync at most this long after a record arrives ...
    fsync_every = 1000         # ... or once this many records wait, whichever comes first
    segment_bytes = "16MB"
    replay_rate = 50000        # records/s cap while replaying a backlog; 0 = unlimited
    confirm = "pong"           # or "jetstream": delete only on the hub stream's PubAck
    stream = "EDGE"            # jetstream: expected stream name in the PubAck ("" = any)
    jetstream_subject_prefix = ""  # jetstream: publish as "<prefix>.<subject>" ("" = the subject itself)
    batch = 500                # records per confirmation batch

The section is enabled when the table exists and ``subjects`` is non-empty. ``dir`` defaults to
``<state dir>/outbox``, resolved by the runtime (``edge.store.forwarder.resolve_directory``; ``dir``
stays ``None`` here): ``state_dir``, else ``$STATE_DIRECTORY``, else ``$XDG_STATE_HOME/nats-edge``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from edge.config import values as v
from edge.config.sections import KeyReporter, register_section

__all__ = ["StoreForwardSettings", "parse_store_forward", "read_long_duration", "validate_subscribe_subject"]

DEFAULT_MAX_BYTES: Final = 256 * 1024 * 1024
DEFAULT_MAX_MSGS: Final = 1_000_000
DEFAULT_MAX_AGE: Final = 7 * 86400.0
DEFAULT_FSYNC_INTERVAL: Final = 0.1
DEFAULT_FSYNC_EVERY: Final = 1000
DEFAULT_SEGMENT_BYTES: Final = 16 * 1024 * 1024
MIN_SEGMENT_BYTES: Final = 64 * 1024
MAX_SEGMENT_BYTES: Final = 1024 * 1024 * 1024
DEFAULT_REPLAY_RATE: Final = 50_000
DEFAULT_BATCH: Final = 500
MAX_BATCH: Final = 100_000

FullPolicy = Literal["drop_oldest", "reject_new"]
ConfirmMode = Literal["pong", "jetstream"]

_KNOWN: Final = frozenset({
    "subjects", "dir", "max_bytes", "max_msgs", "max_age", "full_policy", "fsync_interval", "fsync_every",
    "segment_bytes", "replay_rate", "confirm", "stream", "jetstream_subject_prefix", "batch",
})
_DAYS_RE: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)d(.*)$")
# JetStream stream names may not contain whitespace, '.', '*', '>', path separators (nats-server
# server/stream.go isValidName plus the file-store's restrictions).
_STREAM_RE: Final = re.compile(r"^[^\s.*>/\\]+$")


@dataclass(frozen=True, slots=True)
class StoreForwardSettings:
    subjects: tuple[str, ...] = ()
    dir: str | None = None
    max_bytes: int = DEFAULT_MAX_BYTES
    max_msgs: int = DEFAULT_MAX_MSGS
    max_age: float = DEFAULT_MAX_AGE
    full_policy: FullPolicy = "drop_oldest"
    fsync_interval: float = DEFAULT_FSYNC_INTERVAL
    fsync_every: int = DEFAULT_FSYNC_EVERY
    segment_bytes: int = DEFAULT_SEGMENT_BYTES
    replay_rate: int = DEFAULT_REPLAY_RATE
    confirm: ConfirmMode = "pong"
    stream: str = ""
    jetstream_subject_prefix: str = ""
    batch: int = DEFAULT_BATCH
    # The raw table, so that the loader can overlay profile < file < flags by key.
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def enabled(self) -> bool:
        return bool(self.subjects)


def validate_subscribe_subject(subject: str) -> None:
    """Raise ValueError unless ``subject`` is a valid NATS subscribe subject (wildcards allowed).

    Rules as nats-server's ``IsValidSubject``: non-empty tokens separated by '.', no whitespace,
    ``*`` and ``>`` only as whole tokens, ``>`` only as the last token.
    """
    if not subject:
        raise ValueError("empty subject")
    if any(c.isspace() for c in subject):
        raise ValueError(f"subject {subject!r} contains whitespace")
    tokens = subject.split(".")
    for i, tok in enumerate(tokens):
        if not tok:
            raise ValueError(f"subject {subject!r} has an empty token")
        if len(tok) > 1 and ("*" in tok or ">" in tok):
            raise ValueError(f"subject {subject!r}: wildcards must be whole tokens, got {tok!r}")
        if tok == ">" and i != len(tokens) - 1:
            raise ValueError(f"subject {subject!r}: '>' must be the last token")


def read_long_duration(value: Any, *, minimum: float | None = None) -> float:
    """A duration that also accepts a leading days part: ``"7d"``, ``"1d12h"``, plus what read_duration does."""
    if isinstance(value, str):
        m = _DAYS_RE.match(value)
        if m:
            rest = m.group(2).strip()
            seconds = float(m.group(1)) * 86400.0
            if rest:
                seconds += v.read_duration(rest, minimum=0.0)
            if minimum is not None and seconds < minimum:
                raise ValueError(f"must be at least {minimum:g}s, got {value!r}")
            return seconds
    return v.read_duration(value, minimum=minimum)


def _read_subjects(value: Any) -> tuple[str, ...]:
    subjects = v.read_str_list(value)
    for s in subjects:
        validate_subscribe_subject(s)
    return tuple(dict.fromkeys(subjects))  # duplicates are harmless; keep the first


def _read_choice(value: Any, *, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"expected one of {', '.join(repr(c) for c in choices)}, got {value!r}")
    return value


def _read_stream(value: Any) -> str:
    text = v.read_str(value, allow_empty=True)
    if text and not _STREAM_RE.match(text):
        raise ValueError(f"not a valid JetStream stream name: {text!r}")
    return text


def _read_prefix(value: Any) -> str:
    text = v.read_str(value, allow_empty=True)
    if text:
        if "*" in text or ">" in text:
            raise ValueError(f"a subject prefix cannot contain wildcards, got {text!r}")
        validate_subscribe_subject(text)
    return text


def parse_store_forward(raw: Any, rep: KeyReporter) -> StoreForwardSettings:
    """Parse and validate the table; errors name the file and the key."""
    table: dict[str, Any] = dict(raw)
    rep.reject_unknown(table, _KNOWN)
    kw: dict[str, Any] = {}
    readers: dict[str, tuple[Any, dict[str, Any]]] = {
        "subjects": (_read_subjects, {}),
        "dir": (v.read_str, {}),
        "max_bytes": (v.read_size, {"minimum": 2 * MIN_SEGMENT_BYTES}),
        "max_msgs": (v.read_int, {"minimum": 1}),
        "max_age": (read_long_duration, {"minimum": 0.0}),
        "full_policy": (_read_choice, {"choices": ("drop_oldest", "reject_new")}),
        "fsync_interval": (v.read_duration, {"minimum": 0.0, "maximum": 60.0}),
        "fsync_every": (v.read_int, {"minimum": 1}),
        "segment_bytes": (v.read_size, {"minimum": MIN_SEGMENT_BYTES, "maximum": MAX_SEGMENT_BYTES}),
        "replay_rate": (v.read_int, {"minimum": 0}),
        "confirm": (_read_choice, {"choices": ("pong", "jetstream")}),
        "stream": (_read_stream, {}),
        "jetstream_subject_prefix": (_read_prefix, {}),
        "batch": (v.read_int, {"minimum": 1, "maximum": MAX_BATCH}),
    }
    for key, (reader, kwargs) in readers.items():
        if key in table:
            kw[key] = rep.read(table, key, reader, **kwargs)
    settings = StoreForwardSettings(**kw, raw=table)
    if settings.max_bytes < 2 * settings.segment_bytes:
        raise rep.error(
            "max_bytes",
            f"{settings.max_bytes} must be at least twice segment_bytes ({settings.segment_bytes}): "
            "whole segments are dropped and deleted",
        )
    return settings


register_section("store_forward", parse_store_forward)
