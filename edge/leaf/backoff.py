"""Reconnect policy for a leaf remote, sans-IO: URL rotation and the wait before each dial.

After nats-server's connectToRemoteLeafNode / leafProcessErr (docs/nats-protocol.md section 3.9):
the URL list is the configured URLs (shuffled unless ``no_randomize``) plus the ``leafnode_urls``
the hub advertises (unless ``ignore_discovered_servers``), rotated one per attempt. A failed dial
waits ``reconnect`` + rand[0, jitter); after a disconnect the first retry comes ``reconnect`` later;
after a loop / permission / same-cluster error the wait is ``error_delay`` (30 s), after a
min-version rejection 5 s.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from edge.config.leafnodes import DEFAULT_MIN_VERSION_DELAY, LeafURL

# -ERR texts that make nats-server's leaf wait the long delay (leafnode.go leafProcessErr).
_LONG_DELAY_MARKERS = ("Loop detected", "Permissions Violation", "same cluster name")
_MIN_VERSION_MARKER = "minimum version required"


def delay_for_error(text: str, error_delay: float) -> float | None:
    """The special wait after the hub's -ERR ``text``, or None for the ordinary one."""
    if any(m in text for m in _LONG_DELAY_MARKERS):
        return error_delay
    if _MIN_VERSION_MARKER in text:
        return min(error_delay, DEFAULT_MIN_VERSION_DELAY)
    return None


@dataclass
class Reconnect:
    """Which URL to dial next and how long to wait first. ``rng`` is injectable for tests."""

    configured: Sequence[LeafURL]
    reconnect: float
    jitter: float
    no_randomize: bool = False
    ignore_discovered: bool = False
    rng: random.Random = field(default_factory=random.Random)
    urls: list[LeafURL] = field(init=False)
    _next: int = field(default=0, init=False)
    _special: float | None = field(default=None, init=False)
    failures: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.urls = list(self.configured)
        if not self.no_randomize:
            self.rng.shuffle(self.urls)

    def next_url(self) -> LeafURL:
        url = self.urls[self._next % len(self.urls)]
        self._next = (self._next + 1) % len(self.urls)
        return url

    def discovered(self, hostports: Sequence[str]) -> None:
        """Add the hub's ``leafnode_urls`` (``host:port``) not yet known; they inherit the first URL's
        scheme and credentials (as the Go leaf does)."""
        if self.ignore_discovered or not self.configured:
            return
        template = self.configured[0]
        known = {(u.host, u.port) for u in self.urls}
        for hp in hostports:
            if not isinstance(hp, str) or ":" not in hp:
                continue
            host, _, port_s = hp.rpartition(":")
            host = host.strip("[]")
            if not port_s.isdigit() or not host or (host, int(port_s)) in known:
                continue
            known.add((host, int(port_s)))
            self.urls.append(replace(template, host=host, port=int(port_s)))

    def connected(self) -> None:
        self.failures = 0

    def special(self, delay: float) -> None:
        """Use ``delay`` for the next wait (after a loop / permission error)."""
        self._special = delay

    def wait_after_disconnect(self) -> float:
        """The wait before re-dialling after a link that was up went down (CAP: 1.0 s)."""
        return self._take_special(self.reconnect)

    def wait_after_failure(self) -> float:
        """The wait after a dial or handshake that failed: reconnect + rand[0, jitter)."""
        self.failures += 1
        return self._take_special(self.reconnect + self.rng.random() * self.jitter)

    def _take_special(self, default: float) -> float:
        special, self._special = self._special, None
        return special if special is not None else default
