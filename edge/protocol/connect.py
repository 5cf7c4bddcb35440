"""The CONNECT options a client connection keeps (nats-server's clientOpts; docs/nats-protocol.md 1.2).

One typed value instead of a field list per user: the client connection holds one, and a serial
port's session (edge.adapters.serial) captures and restores it. Credentials (``user``, ``pass``,
``auth_token``, ``nkey``, ``sig``, ``jwt``) are not kept here: authentication reads them from the
CONNECT itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from edge.protocol import errors as E
from edge.protocol.errors import ProtocolError


@dataclass(slots=True, frozen=True)
class ConnectOptions:
    """Defaults are nats-server's for a client that never sends CONNECT."""

    verbose: bool = True
    pedantic: bool = True
    echo: bool = True
    headers: bool = False
    no_responders: bool = False
    protocol: int = 0
    name: str = ""
    lang: str = ""
    version: str = ""

    def merged(self, options: dict[str, Any]) -> ConnectOptions:
        """These options updated by a CONNECT's JSON object: the keys it names replace ours, the others
        stay (nats-server unmarshals a repeated CONNECT into the existing options).

        Raises:
            ProtocolError: ``protocol`` is not 0 or 1 (invalid client protocol), or ``no_responders``
                without ``headers``, with nats-server's -ERR texts.
        """
        protocol = options.get("protocol", self.protocol)
        if not isinstance(protocol, int) or isinstance(protocol, bool) or protocol not in (0, 1):
            raise ProtocolError(E.ERR_INVALID_PROTOCOL)
        headers = bool(options.get("headers", self.headers))
        no_responders = bool(options.get("no_responders", self.no_responders))
        if no_responders and not headers:
            raise ProtocolError(E.ERR_NO_RESPONDERS_HEADERS)
        return ConnectOptions(
            verbose=bool(options.get("verbose", self.verbose)),
            pedantic=bool(options.get("pedantic", self.pedantic)),
            echo=bool(options.get("echo", self.echo)),
            headers=headers,
            no_responders=no_responders,
            protocol=protocol,
            name=_str_opt(options.get("name", self.name)),
            lang=_str_opt(options.get("lang", self.lang)),
            version=_str_opt(options.get("version", self.version)),
        )

    def as_connect(self) -> dict[str, Any]:
        """The options as CONNECT JSON fields (``merged`` of them gives back these options)."""
        return asdict(self)


def _str_opt(value: Any) -> str:
    return value if isinstance(value, str) else ""
