"""Value types shared by the advertisement decoders (no I/O, no bleak)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

MeasurementKind = Literal["sensor", "binary", "event", "info"]
Value = float | int | str | bool

#: Every reason a frame can be rejected for; the counters are keyed by these (a closed set, so bounded).
RejectReason = Literal[
    "truncated",  # a field or object runs past the end of the payload
    "bad_length",  # payload length is not one the format defines
    "unknown_object_id",  # BTHome: first object id is unknown, nothing decoded
    "unsupported_version",  # BTHome version != 2, Eddystone TLM version != 0, Ruuvi format != 5
    "bad_mic",  # BTHome AES-CCM authentication failed
    "replayed_counter",  # BTHome encryption counter not strictly increasing
    "missing_key",  # BTHome encrypted frame but no key for the MAC
    "unencrypted_for_keyed_device",  # BTHome plain frame from a MAC that has a key
    "bad_address",  # the address is not a 48-bit MAC (needed for the BTHome nonce)
    "bad_value",  # a field holds a value the format forbids (e.g. invalid UTF-8 text)
]
REJECT_REASONS: Final[tuple[str, ...]] = RejectReason.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Measurement:
    """One decoded value.

    ``channel`` is a subject-token-safe name (``temperature``, ``temperature_2``, ``battery_low``);
    ``detail`` carries an event's argument (dimmer steps, command parameter) and is None otherwise.
    """

    channel: str
    value: Value
    unit: str = ""
    kind: MeasurementKind = "sensor"
    detail: int | None = None


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """What a channel name means: its one unit (``""`` = none) and kind. Each decoder module declares its
    channels in a ``CHANNELS`` mapping and builds its measurements from it (:func:`measure`), so the
    documented table (``edge/adapters/ble/CHANNELS.md``) is derived from the code and cannot drift."""

    unit: str = ""
    kind: MeasurementKind = "sensor"


Channels = Mapping[str, ChannelSpec]


def measure(channels: Channels, name: str, value: Value, detail: int | None = None) -> Measurement:
    """A measurement of the declared channel ``name`` (KeyError for an undeclared one: a decoder bug)."""
    spec = channels[name]
    return Measurement(name, value, spec.unit, spec.kind, detail)


@dataclass(frozen=True, slots=True)
class DecodeResult:
    """The outcome of decoding one advertisement.

    ``format`` is None when no decoder recognised the advert (not an error: most adverts are foreign).
    ``reject`` is set when a recognised frame was malformed or failed authentication; then
    ``measurements`` is empty. ``duplicate`` is True when ``dedupe_key`` equals the last key seen for this
    device and format (the caller should not publish it again). ``trigger_based`` marks BTHome devices
    that advertise only on events (never mark them offline for silence).
    """

    format: str | None
    measurements: tuple[Measurement, ...] = ()
    dedupe_key: int | None = None
    duplicate: bool = False
    trigger_based: bool = False
    encrypted: bool = False
    reject: RejectReason | None = None
    identity: Mapping[str, Value] = field(default_factory=dict)
    note: str | None = None  # e.g. "stopped_at_unknown_object_id" for a partial BTHome decode

    @property
    def ok(self) -> bool:
        return self.format is not None and self.reject is None


UNRECOGNISED: Final = DecodeResult(format=None)


def rejected(fmt: str, reason: RejectReason) -> DecodeResult:
    return DecodeResult(format=fmt, reject=reason)


class RejectCounters(Counter[str]):
    """Counts rejects by ``RejectReason`` (closed key set, hence bounded)."""
