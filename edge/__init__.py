"""nats-edge: a NATS-protocol broker for IoT gateways.

The import package is deliberately light: importing ``edge`` pulls in nothing but the version, so
that ``nats-edge check-config`` and the adapters' lazy imports stay cheap on a 512 MB board.
"""

from __future__ import annotations

__all__ = ["COMPILED_MODULES", "NATS_SERVER_VERSION", "__version__", "build_kind"]

__version__ = "0.1.0"

# The nats-server version whose client and leafnode protocol we speak, reported as INFO/varz
# `version` (and leaf CONNECT `version`) because clients and hubs gate features on it (nats.py's
# connected_server_version, a hub's leafnodes min_version). 2.10.0: headers, no_responders and the
# leafnode protocol (LS+/LS-/LMSG, leaf CONNECT fields) as captured from nats-server 2.10+.
# Our own release is reported separately as `edge_version`.
NATS_SERVER_VERSION = "2.10.0"

# Compiled with Cython when the install could (hatch_build.py; the same list, as paths, is
# pyproject.toml's [tool.hatch.build.targets.wheel.hooks.custom] modules, checked by a unit test):
# the hot path, and edge.runtime.heap (glibc's malloc_trim without ctypes: idle RSS).
COMPILED_MODULES = (
    "edge.protocol.parser",
    "edge.core.sublist",
    "edge.core.router",
    "edge.core.outbound",
    "edge.core.client",
    "edge.runtime.heap",
)


def build_kind() -> str:
    """Which build runs: ``"compiled"`` when every module in COMPILED_MODULES is an extension module, ``"pure"`` when
    none is, ``"mixed"`` otherwise (a partial build). Decided by what Python imports (or would
    import), not by what the installer meant to build; imports nothing itself."""
    from importlib.machinery import EXTENSION_SUFFIXES
    from importlib.util import find_spec

    global _build_kind
    if _build_kind is not None:
        return _build_kind
    compiled = 0
    for name in COMPILED_MODULES:
        spec = find_spec(name)
        origin = (spec.origin or "") if spec is not None else ""
        compiled += any(origin.endswith(suffix) for suffix in EXTENSION_SUFFIXES)
    if compiled == len(COMPILED_MODULES):
        _build_kind = "compiled"
    else:
        _build_kind = "pure" if compiled == 0 else "mixed"
    return _build_kind


_build_kind: str | None = None  # computed once: what a process imported does not change
