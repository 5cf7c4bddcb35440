"""Per-device decoder state owned by the caller: dedupe keys and BTHome replay counters, bounded."""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Final

#: Default bound on devices remembered; a busy site hears a few hundred advertisers (phones rotate MACs).
MAX_DEVICES: Final = 512


@dataclass(slots=True)
class DeviceState:
    """What the decoders remember about one advertiser.

    ``last_key`` maps a format name to its last dedupe key (bounded by the number of formats);
    ``bthome_counter`` is the last authenticated BTHome encryption counter (replay protection).
    """

    last_key: dict[str, int] = field(default_factory=dict)
    bthome_counter: int | None = None
    bthome_last_frame: bytes = b""  # last authenticated encrypted frame (≤ 31 B), to spot repeats
    pinned: bool = False  # has a BTHome key: evicted last (forgetting its counter reopens replay)


class DecoderState:
    """A bounded LRU map of address → ``DeviceState`` plus reject counters.

    When full, the least recently heard device without a key is evicted (``evictions`` counts them);
    devices with a BTHome key are evicted only if every entry is keyed, since forgetting their counter
    reopens the replay window.
    """

    __slots__ = ("devices", "evictions", "max_devices", "rejects")

    def __init__(self, max_devices: int = MAX_DEVICES) -> None:
        if max_devices < 1:
            raise ValueError("max_devices must be >= 1")
        self.max_devices = max_devices
        self.devices: OrderedDict[str, DeviceState] = OrderedDict()
        self.evictions = 0
        self.rejects: Counter[str] = Counter()  # keys: RejectReason values (closed set)

    def device(self, address: str, pinned: bool = False) -> DeviceState:
        """Return (creating if needed) the state for ``address`` and mark it most recently used."""
        st = self.devices.get(address)
        if st is not None:
            self.devices.move_to_end(address)
            st.pinned |= pinned
            return st
        if len(self.devices) >= self.max_devices:
            # O(n) scan only when full and only past pinned entries, which config bounds (one per key).
            victim = next((a for a, d in self.devices.items() if not d.pinned), None)
            if victim is None:
                victim = next(iter(self.devices))
            del self.devices[victim]
            self.evictions += 1
        st = self.devices[address] = DeviceState(pinned=pinned)
        return st
