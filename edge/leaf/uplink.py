"""The leaf uplink: keeps one remote's link to the hub up, and bridges interest and messages.

One :class:`Uplink` per configured remote (``[leafnodes] remotes``). It owns a reconnect task that
dials the hub (rotating URLs, backoff + jitter: :mod:`edge.leaf.backoff`), runs the handshake (docs
section 3.1: INFO, [TLS], CONNECT without ``lang``, the hub's ``connect_info`` INFO, then the full
``LS+`` set with our ``$LDS``) and waits for the link to drop. Independently of the link it tracks
local interest (a server interest listener) and forwards local publishes that match the hub's
interest (a router publish hook). While the link is down local traffic is untouched; messages that
would have gone upstream are dropped and counted (store-and-forward is a separate feature).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import ssl
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from edge import NATS_SERVER_VERSION
from edge.config.leafnodes import LeafnodesSettings, LeafRemote, LeafURL
from edge.leaf.backoff import Reconnect, delay_for_error
from edge.leaf.credentials import CredentialsError, connect_credentials
from edge.leaf.interest import LocalInterest, SubjectFilter, subject_filter
from edge.leaf.link import LeafHandshakeError, LeafLink
from edge.protocol.encode import encode_connect, encode_ls_plus

if TYPE_CHECKING:
    from edge.core.server import Server
    from edge.core.sublist import Match
    from edge.core.subscription import Subscription

log = logging.getLogger("edge.leaf")


def new_lds() -> bytes:
    """``$LDS.<22-char nuid>``: this gateway's loop-detection subject (docs 3.7)."""
    return b"$LDS." + base64.b32encode(secrets.token_bytes(15)).rstrip(b"=")[:22]


@dataclass
class LinkStats:
    """Counters for the monitoring endpoint."""

    in_msgs: int = 0
    in_bytes: int = 0
    out_msgs: int = 0  # of links already closed; the live link's outbound buffer counts its own
    out_bytes: int = 0
    connects: int = 0
    reconnects: int = 0
    dropped_down: int = 0  # would-be upstream messages published while the link was down
    dropped_slow: int = 0  # the hub could not keep up: outbound buffer full
    dropped_denied: int = 0  # deny_exports / hub export permissions
    dropped_denied_in: int = 0  # from the hub on a deny_imports subject (the hub should not send them)
    dropped_too_big: int = 0  # larger than the hub's max_payload
    connected_total: float = 0.0  # seconds connected, closed sessions only
    last_error: str = ""


class Uplink:
    """One remote: reconnect loop + interest listener + publish hook."""

    def __init__(self, server: Server, remote: LeafRemote, *, lds: bytes | None = None) -> None:
        self.server = server
        self.remote = remote
        self.lds = lds or new_lds()
        self.reconnect = Reconnect(remote.urls, remote.reconnect, remote.reconnect_jitter,
                                   no_randomize=remote.no_randomize,
                                   ignore_discovered=remote.ignore_discovered_servers)
        self.deny_imports = [s.encode() for s in remote.deny_imports]
        self.deny_exports = [s.encode() for s in remote.deny_exports]
        self.local = LocalInterest(subject_filter(None, self.deny_imports))
        self._export_ok = subject_filter(None, self.deny_exports)
        self._export_all = not self.deny_exports
        # deny_imports goes to the hub as deny_pub, which nats-server enforces; checked again here so
        # a hub that ignores it still cannot deliver denied subjects to local wildcard subscribers.
        self.import_ok: SubjectFilter | None = subject_filter(None, self.deny_imports) if self.deny_imports else None
        self.link: LeafLink | None = None
        self._up: LeafLink | None = None
        self.stats = LinkStats()
        self.current_url: LeafURL | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.connected_event = asyncio.Event()
        # Store-and-forward (edge.store.forwarder): subjects it covers are not sent up live (the forwarder
        # sends them from the outbox), and it sees every PONG (pong-mode confirmation).
        self.skip_upstream: Callable[[bytes], bool] | None = None
        self.pong_hook: Callable[[LeafLink], None] | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        for sub in self.server.sublist.all():
            self.local.add(sub.subject, sub.queue)
        self.server.interest_listeners.append(self._on_interest)
        self.server.router.hooks.append(self._on_publish)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="leaf-uplink")

    async def stop(self) -> None:
        self._stopping = True
        if self._on_interest in self.server.interest_listeners:
            self.server.interest_listeners.remove(self._on_interest)
        if self._on_publish in self.server.router.hooks:
            self.server.router.hooks.remove(self._on_publish)
        if self.link is not None:
            self.link.close("shutting down")
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                if asyncio.current_task() is not None and asyncio.current_task().cancelling():  # type: ignore[union-attr]
                    raise

    @property
    def connected(self) -> bool:
        return self._up is not None

    def snapshot(self) -> dict[str, Any]:
        """State and counters in the shape of edge.monitoring.providers (cheap, on the loop)."""
        out: dict[str, Any] = asdict(self.stats)
        up = self._up
        if up is not None:
            out["out_msgs"] += up.outbound.msgs
            out["out_bytes"] += up.outbound.bytes
        out["url"] = str(self.current_url) if self.current_url else ""
        out["connected"] = up is not None
        out["account"] = "$G"
        out["compression"] = "off"
        out["name"] = ""
        out["connected_for"] = 0.0
        out["hub_interest"] = 0
        out["subscriptions"] = len(self.local)
        out["subscriptions_list"] = [k[0].decode(errors="replace") for k in self.local.keys()]  # noqa: SIM118 - LocalInterest.keys(), not a dict
        if up is not None:
            out["name"] = str(up.info.get("server_name", ""))
            out["connected_for"] = time.monotonic() - up.up_since
            out["hub_interest"] = len(up.hub)
            out["rtt"] = up.rtt
            peer = up.transport.get_extra_info("peername") if up.transport is not None else None
            if isinstance(peer, tuple) and len(peer) >= 2:
                out["ip"], out["port"] = peer[0], peer[1]
        return out

    # -- reconnect loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            url = self.reconnect.next_url()
            self.current_url = url
            link: LeafLink | None = None
            try:
                link = await self._connect(url)
            except Exception as exc:  # any dial/handshake failure: log it and retry, never crash the broker
                if self.link is not None:
                    self.link.abort(str(exc))
                self.link = None
                text = str(exc) or type(exc).__name__
                if not isinstance(exc, (OSError, TimeoutError, LeafHandshakeError, CredentialsError, ssl.SSLError)):
                    log.exception("Leafnode connection to %s failed unexpectedly", url)
                log.warning("Leafnode connection to %s failed: %s", url, text)
                self.stats.last_error = text  # shown on the status page while the link is down
                wait = self.reconnect.wait_after_failure()
            else:
                reason = await asyncio.shield(link.closed_fut)
                log.info("Leafnode connection to %s closed: %s", url, reason)
                self.stats.last_error = reason
                self.link = None
                wait = self.reconnect.wait_after_disconnect()
            if self._stopping:
                return
            await asyncio.sleep(wait)
            self.stats.reconnects += 1

    async def _connect(self, url: LeafURL) -> LeafLink:
        loop = self.server.loop
        remote = self.remote
        use_tls = url.tls or remote.tls is not None
        ctx = self._ssl_context() if use_tls else None
        first = remote.tls is not None and remote.tls.handshake_first
        async with asyncio.timeout(remote.dial_timeout + (remote.tls.timeout if first and remote.tls else 0)):
            _, link = await loop.create_connection(
                lambda: LeafLink(self), url.host, url.port,
                ssl=ctx if first else None, server_hostname=url.host if first else None,
            )
        self.link = link
        try:
            async with asyncio.timeout(remote.first_info_timeout):
                info = await link.info_fut
        except TimeoutError:
            raise LeafHandshakeError("no INFO from the hub within first_info_timeout") from None
        cid = info.get("client_id")
        if not isinstance(cid, int) or cid == 0 or "leafnode_urls" not in info:
            # leafnode.go's wrong-port check: a client port's INFO has neither.
            raise LeafHandshakeError("not a leafnode port (INFO without client_id/leafnode_urls)")
        if info.get("tls_required") and not first:
            if ctx is None:
                ctx = self._ssl_context()
            timeout = remote.tls.timeout if remote.tls else 2.0
            async with asyncio.timeout(timeout):
                assert link.transport is not None
                transport = await loop.start_tls(link.transport, link, ctx, server_hostname=url.host)
            if transport is None:
                raise LeafHandshakeError("TLS handshake failed")
            link.transport = transport
        elif use_tls and not first and not info.get("tls_required"):
            raise LeafHandshakeError("TLS configured but the hub does not offer it")
        nonce = info.get("nonce") if isinstance(info.get("nonce"), str) else None
        options: dict[str, Any] = {
            "version": NATS_SERVER_VERSION,  # a hub's leafnodes min_version checks this
            "server_id": self.server.server_id,
            "name": self.server.server_name,
            "headers": True,
            "remote_account": "$G",
            "protocol": 1,
        }
        options.update(await connect_credentials(remote, url, nonce))
        if self.deny_imports:
            options["deny_pub"] = list(remote.deny_imports)
        link.write_now(encode_connect(options))
        if info.get("info_on_connect"):
            try:
                async with asyncio.timeout(remote.connect_info_timeout):
                    await link.ready_fut
            except TimeoutError:
                raise LeafHandshakeError("Stale Leaf Node Connection - Closing (no connect_info INFO)") from None
        else:
            link.go_up()
        return link

    def _ssl_context(self) -> ssl.SSLContext:
        tls = self.remote.tls
        ctx = ssl.create_default_context(cafile=tls.ca_file if tls else None)
        if tls is not None:
            if tls.cert_file and tls.key_file:
                ctx.load_cert_chain(tls.cert_file, tls.key_file)
            if not tls.verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
        return ctx

    # -- link callbacks -------------------------------------------------------------------------

    def link_up(self, link: LeafLink) -> None:
        """Called synchronously by the link when the handshake completes: queue the full interest."""
        self._up = link
        self.stats.connects += 1
        self.reconnect.connected()
        for line in self.local.snapshot():
            link.outbound.append(line)
        link.outbound.append(encode_ls_plus(self.lds, None, 1))
        log.info("Leafnode connection to %s established (hub %s %s), %d interest keys sent",
                 self.current_url, link.info.get("server_name", "?"), link.info.get("version", "?"),
                 len(self.local))
        self.connected_event.set()

    def link_closed(self, link: LeafLink, reason: str) -> None:
        if self._up is link:
            self._up = None
            self.stats.out_msgs += link.outbound.msgs
            self.stats.out_bytes += link.outbound.bytes
            self.connected_event.clear()
            self.stats.connected_total += time.monotonic() - link.up_since
            self.local.allowed = subject_filter(None, self.deny_imports)
            self._export_ok = subject_filter(None, self.deny_exports)
            self._export_all = not self.deny_exports

    def hub_error_delay(self, text: str) -> float | None:
        return delay_for_error(text, self.remote.error_delay)

    def apply_permissions(self, info: dict[str, Any]) -> None:
        """``import``/``export`` of the hub's connect_info INFO narrow what we advertise and send."""
        imp, exp = info.get("import"), info.get("export")

        def lists(perm: Any) -> tuple[list[bytes] | None, list[bytes]]:
            if not isinstance(perm, dict):
                return None, []
            allow = perm.get("allow")
            deny = perm.get("deny") or []
            a = [s.encode() for s in allow if isinstance(s, str)] if isinstance(allow, list) else None
            d = [s.encode() for s in deny if isinstance(s, str)] if isinstance(deny, list) else []
            return a, d

        ia, idn = lists(imp)
        ea, edn = lists(exp)
        self.local.allowed = subject_filter(ia, idn + self.deny_imports)
        self._export_ok = subject_filter(ea, edn + self.deny_exports)
        self._export_all = ea is None and not edn and not self.deny_exports

    # -- interest and messages ------------------------------------------------------------------

    def _on_interest(self, sub: Subscription, added: bool) -> None:
        line = self.local.add(sub.subject, sub.queue) if added else self.local.remove(sub.subject, sub.queue)
        if line is not None and self._up is not None:
            self._up.outbound.append(line)

    def _on_publish(self, src: Any, subject: bytes, reply: bytes | None, hdr_len: int, data: bytes,
                    match: Match) -> int:
        skip = self.skip_upstream
        if skip is not None and skip(subject):
            return 0
        link = self._up
        if link is None:
            if not isinstance(src, LeafLink):
                self.stats.dropped_down += 1
            return 0
        if src is link:
            return 0
        queues = link.hub.route(subject, match.queues)
        if queues is None:
            return 0
        if not self._export_all and not self._export_ok(subject):
            self.stats.dropped_denied += 1
            return 0
        if len(data) > link.hub_max_payload:
            self.stats.dropped_too_big += 1
            return 0
        if not link.send_msg(subject, reply, hdr_len, data, queues):
            self.stats.dropped_slow += 1
            return 0
        return 1


class LeafManager:
    """All remotes of the ``[leafnodes]`` section."""

    def __init__(self, server: Server, settings: LeafnodesSettings) -> None:
        self.uplinks = [Uplink(server, r) for r in settings.remotes]

    def start(self) -> None:
        for u in self.uplinks:
            u.start()

    async def stop(self) -> None:
        for u in self.uplinks:
            await u.stop()

    def snapshot(self) -> list[dict[str, Any]]:
        return [u.snapshot() for u in self.uplinks]
