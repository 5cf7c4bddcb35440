"""Protocol errors and nats-server's exact ``-ERR`` texts (server/client.go errProto and friends).

docs/nats-protocol.md section 1.7 lists which of them close the connection. A parser raises
:class:`ProtocolError` and nothing else on malformed input; the connection shell turns it into the
``-ERR`` line (edge.protocol.encode.encode_err, when the text is not None) and closes.
"""

from __future__ import annotations

from typing import Final

from edge.errors import EdgeError

ERR_UNKNOWN_OP: Final = "Unknown Protocol Operation"
ERR_AUTH_VIOLATION: Final = "Authorization Violation"
ERR_AUTH_TIMEOUT: Final = "Authentication Timeout"
ERR_MAX_PAYLOAD: Final = "Maximum Payload Violation"
ERR_MAX_CONTROL_LINE: Final = "maximum control line exceeded"
ERR_MAX_CONNECTIONS: Final = "maximum connections exceeded"
ERR_STALE: Final = "Stale Connection"
ERR_INVALID_PROTOCOL: Final = "invalid client protocol"
ERR_NO_RESPONDERS_HEADERS: Final = "no responders requires headers support"
ERR_LEAF_PORT: Final = "attempted to connect to leaf node port"
ERR_INVALID_SUBJECT: Final = "Invalid Subject"
ERR_INVALID_PUBLISH_SUBJECT: Final = "Invalid Publish Subject"
ERR_MAX_SUBSCRIPTIONS: Final = "maximum subscriptions exceeded"


def permissions_publish(subject: str) -> str:
    return f'Permissions Violation for Publish to "{subject}"'


def permissions_subscribe(subject: str, queue: str | None = None) -> str:
    if queue:
        return f'Permissions Violation for Subscription to "{subject}" using queue "{queue}"'
    return f'Permissions Violation for Subscription to "{subject}"'


def permissions_publish_reply(reply: str) -> str:
    """A publish whose reply subject is reserved (nats-server replySubjectViolation)."""
    return f'Permissions Violation for Publish with Reply of "{reply}"'


def permissions_subscribe_revoked(subject: str, sid: str) -> str:
    """A subscription a reload's new permissions deny (nats-server processSubsOnConfigReload)."""
    return f'Permissions Violation for Subscription to "{subject}" (sid "{sid}")'


class ProtocolError(EdgeError):
    """The peer broke the protocol; the connection is closed.

    ``text`` is the ``-ERR`` text to send first, or None where nats-server closes without one
    (argument and size parse errors, bad CONNECT JSON: docs section 1.1).
    """

    def __init__(self, text: str | None, detail: str = "") -> None:
        self.text = text
        self.detail = detail
        super().__init__(text or detail or "protocol error")
