"""Pick a hardware profile from the board's device-tree model string (``--profile auto``).

On a Raspberry Pi the firmware exposes the board name at ``/proc/device-tree/model`` as a
NUL-terminated string, e.g. ``Raspberry Pi 4 Model B Rev 1.4``. Anything unrecognised (x86-64, a VM,
another arm64 board) falls back to ``generic``. ``$NATS_EDGE_DEVICE_MODEL_PATH`` overrides the path
(tests use fake model files).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Final

__all__ = ["DEVICE_MODEL_PATH", "GENERIC", "detect_profile", "profile_for_model", "read_model"]

log = logging.getLogger("edge.config")

DEVICE_MODEL_PATH: Final = "/proc/device-tree/model"
GENERIC: Final = "generic"
# The model string is tiny; anything longer is not a device-tree model and is not read further.
_MAX_MODEL_BYTES: Final = 256

# First match wins; order matters ("Compute Module 4" before "Pi 4", "Zero 2" before "Zero").
# Strings as the Raspberry Pi firmware reports them (see raspberrypi/documentation,
# "computers/raspberry-pi.adoc", "Check your Raspberry Pi model and revision").
_MODELS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    (re.compile(r"Raspberry Pi Compute Module 4\b"), "rpi-cm4"),
    (re.compile(r"Raspberry Pi Zero 2 W\b"), "rpi-zero2w"),
    (re.compile(r"Raspberry Pi 3 Model B Plus\b"), "rpi-3bplus"),
    (re.compile(r"Raspberry Pi 4 Model B\b"), "rpi-4b"),
    (re.compile(r"Raspberry Pi 5\b"), "rpi-5"),
)


def read_model(path: str | os.PathLike[str] | None = None) -> str | None:
    """The device-tree model string without its trailing NUL, or None when there is none."""
    path = path or os.environ.get("NATS_EDGE_DEVICE_MODEL_PATH") or DEVICE_MODEL_PATH
    try:
        with open(path, "rb") as fh:
            raw = fh.read(_MAX_MODEL_BYTES)
    except OSError:
        return None
    text = raw.split(b"\0", 1)[0].decode("utf-8", errors="replace").strip()
    return text or None


def profile_for_model(model: str | None) -> str:
    """Map a model string to a profile name; unknown or missing models map to ``generic``."""
    if model:
        for pattern, name in _MODELS:
            if pattern.search(model):
                return name
    return GENERIC


def detect_profile() -> str:
    """The profile for this machine, logged with the reason, e.g. ``rpi-4b`` or ``generic``."""
    path = os.environ.get("NATS_EDGE_DEVICE_MODEL_PATH") or DEVICE_MODEL_PATH
    model = read_model(path)
    name = profile_for_model(model)
    if model is None:
        log.info("Hardware profile auto: no device-tree model at %s, using %r", path, name)
    else:
        log.info("Hardware profile auto: %s reads %r, using %r", Path(path), model, name)
    return name
