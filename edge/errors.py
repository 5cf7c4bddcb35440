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


class ListenError(EdgeError):
    """A listener could not bind. The message is one line naming the listener, worded as nats-server's
    (client: ``Error listening on port: h:p, "listen tcp h:p: bind: ..."``; monitoring: ``Can't start
    monitoring: can't listen to the monitor port: listen tcp h:p: bind: ...``; MQTT: ``Unable to listen
    for MQTT connections: listen tcp h:p: bind: ...``)."""

    @classmethod
    def client(cls, host: str, port: int, exc: OSError) -> ListenError:
        return cls(f'Error listening on port: {host}:{port}, "{_go_listen_error(host, port, exc)}"')

    @classmethod
    def monitoring(cls, host: str, port: int, exc: OSError) -> ListenError:
        return cls(f"Can't start monitoring: can't listen to the monitor port: {_go_listen_error(host, port, exc)}")

    @classmethod
    def mqtt(cls, host: str, port: int, exc: OSError) -> ListenError:
        return cls(f"Unable to listen for MQTT connections: {_go_listen_error(host, port, exc)}")


def _go_listen_error(host: str, port: int, exc: OSError) -> str:
    """Go's net.Listen error text: ``listen tcp 127.0.0.1:4222: bind: address already in use``."""
    import os

    # asyncio wraps the errno's text in its own sentence; the errno's own text is what Go prints.
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"listen tcp {addr}: bind: {reason[:1].lower()}{reason[1:]}"
