"""Configuration: TOML files, hardware profiles and flags, validated into :class:`Settings`."""

from __future__ import annotations

from edge.config.loader import load_settings
from edge.config.settings import AuthorizationSettings, Settings

__all__ = ["AuthorizationSettings", "Settings", "load_settings"]
