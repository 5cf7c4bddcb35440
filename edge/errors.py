"""One error tree for the whole broker, rooted at :class:`EdgeError`."""

from __future__ import annotations


class EdgeError(Exception):
    """Base class of every error nats-edge raises on purpose."""


class ConfigError(EdgeError):
    """A configuration value is missing, of the wrong type or out of range.

    The message always names the file (or flag) and the key, so the operator can fix it without
    reading a traceback.
    """

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        super().__init__(f"{source}: {key}: {problem}")
