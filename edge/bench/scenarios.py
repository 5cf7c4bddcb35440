"""Benchmark scenarios, their registry, and the orchestration of worker processes.

A scenario is a function ``(ctx, target, size) -> list[Result]`` registered in :data:`SCENARIOS` under
its command-line name; adding one means writing the function and one registry line. ``leaf`` starts
a hub nats-server and the target as its leaf (see :mod:`edge.bench.linked`); the ``store-*`` scenarios
measure nats-edge's outbox alone and have no nats-server counterpart. Throughput scenarios share
:func:`run_stream`, which starts the generator processes, releases the publisher once every subscriber
is connected and subscribed, waits until the last subscriber has everything (or stops making
progress), and verifies what arrived.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing as mp
import queue as queue_mod
import resource
import selectors
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from edge.bench import linked, loadgen, mqtt_load
from edge.bench.servers import (
    NATS_SERVER_MISSING,
    ArgvFactory,
    BrokerProcess,
    ServerStartError,
    cpu_seconds,
    find_mosquitto,
    free_port,
    mosquitto_argv,
    mqtt_probe,
    probe,
    rss_bytes,
    start_broker,
    wait_ready,
)
from edge.bench.wire import check_exactly_once, connect_frame
from edge.errors import EdgeError

READY_TIMEOUT: Final = 30.0  # spawning workers on a busy 2-core machine can take seconds
IDLE_TIMEOUT: Final = 3.0  # no subscriber progress for this long after the publisher is done: stop
WINDOW_BYTES: Final = 4 * 1024 * 1024  # credit window between publisher and subscribers
JOIN_TIMEOUT: Final = 5.0


class ScenarioError(EdgeError):
    """A scenario could not run (a worker failed, a broker stopped answering)."""


@dataclass(frozen=True)
class Params:
    """Knobs shared by all scenarios of one run."""

    duration: float = 2.0
    fanout: int = 4
    queue: int = 4
    concurrency: int = 16
    rr_duration: float = 2.0
    conns: int = 500
    startup_runs: int = 3
    window_bytes: int = WINDOW_BYTES
    store_msgs: int = 200_000  # records per store-append / store-amp run
    replay_msgs: int = 100_000  # records stored, then replayed, by store-replay
    store_dir: str | None = None  # where the store scenarios write (default: the system temp dir)


@dataclass
class Target:
    """A broker to measure: ``pid`` enables RSS/CPU figures, ``argv`` enables the startup scenario."""

    name: str
    host: str
    port: int
    pid: int | None = None
    argv: ArgvFactory | None = None
    build: str | None = None  # nats-edge's build (compiled/pure), when known: it picks the targets


@dataclass
class Result:
    """One measured row for one target.

    ``value`` is the row's primary figure in ``unit`` (``msg/s``, ``s`` or ``B``); ``verified`` is None
    when the scenario has nothing to verify. ``extra`` holds secondary figures (p99, CPU per message...).
    """

    scenario: str
    row: str
    size: int | None
    target: str
    value: float | None
    unit: str
    higher_is_better: bool = True
    verified: bool | None = None
    verify_text: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def key(self) -> tuple[str, int | None]:
        return (self.row, self.size)


@dataclass
class Context:
    params: Params
    mp: Any = field(default_factory=lambda: mp.get_context("spawn"))
    nats_server: str | None = None  # binary for the hub of the leaf and store-replay scenarios
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def subject(self, scenario: str) -> str:
        """A fresh subject per run, so nothing left over from an earlier run can be delivered."""
        return f"bench.{scenario}.{time.monotonic_ns() % 10**9}.{next(self._ids)}"


ScenarioFn = Callable[[Context, Target, int | None], list[Result]]


@dataclass(frozen=True)
class Scenario:
    fn: ScenarioFn
    sized: bool
    help: str
    default: bool = True  # False: opt-in, run only when named in --scenarios


# ------------------------------------------------------------------------------------- orchestration


class _Workers:
    """The processes of one scenario and their mailbox; always stopped on exit."""

    def __init__(self, ctx: Context, subscribers: int) -> None:
        m = ctx.mp
        self.ctx = ctx
        self.results = m.Queue()
        self.shared = loadgen.Shared(
            counters=m.RawArray("q", subscribers),
            last_rx=m.RawArray("d", subscribers),
            total=m.RawValue("q", -1),
            stop=m.RawValue("i", 0),
            go=m.Event(),
        )
        self.procs: list[Any] = []
        self.mail: dict[tuple[str, str, int], Any] = {}

    def start(self, fn: Callable[..., None], *args: Any) -> None:
        p = self.ctx.mp.Process(target=fn, args=(*args, self.shared, self.results), daemon=True)
        p.start()
        self.procs.append(p)

    def wait(self, kind: str, role: str, index: int, timeout: float) -> Any:
        """The payload of message (kind, role, index); raises ScenarioError on a worker error."""
        deadline = time.monotonic() + timeout
        key = (kind, role, index)
        while key not in self.mail:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ScenarioError(f"timed out waiting for {role} {index} ({kind})")
            try:
                msg_kind, msg_role, msg_idx, payload = self.results.get(timeout=min(0.5, remaining))
            except queue_mod.Empty:
                dead = [p for p in self.procs if p.exitcode not in (None, 0)]
                if dead:
                    raise ScenarioError(f"a worker died (exit code {dead[0].exitcode})") from None
                continue
            if msg_kind == "error":
                raise ScenarioError(f"{msg_role} {msg_idx}: {payload}")
            self.mail[(msg_kind, msg_role, msg_idx)] = payload
        return self.mail.pop(key)

    def close(self) -> None:
        self.shared.stop.value = 1
        self.shared.go.set()  # release anyone still waiting to start, so they exit
        for p in self.procs:
            p.join(JOIN_TIMEOUT)
            if p.is_alive():
                p.terminate()
                p.join(JOIN_TIMEOUT)
        self.results.close()
        self.results.join_thread()

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class StreamOutcome:
    sent: int
    t0: float
    t_end: float
    delivered: int
    subscribers: list[dict[str, Any]]
    verified: bool
    verify_text: str
    cpu: float | None

    @property
    def elapsed(self) -> float:
        return max(self.t_end - self.t0, 1e-9)


def run_stream(
    ctx: Context,
    *,
    host: str,
    port: int,
    size: int,
    subscribers: int,
    queue: str | None = None,
    fake: str | None = None,
    pid: int | None = None,
    subject: str | None = None,
    sub_port: int | None = None,
    before_go: Callable[[], None] | None = None,
) -> StreamOutcome:
    """One publisher and ``subscribers`` subscribers for ``params.duration`` seconds, verified.

    ``fake="discard"`` measures the publisher alone against a discarding fake server; ``fake="blaster"``
    measures one subscriber fed by a fake server. Otherwise host:port is the broker under test.
    ``sub_port`` puts the subscribers on another server (a hub); ``before_go`` runs once every worker
    is connected and subscribed, just before the clock starts (e.g. to wait for interest to propagate).
    """
    p = ctx.params
    subject = subject or ctx.subject("stream")
    frame_len = len(subject) + size + 24
    window = max(1, p.window_bytes // frame_len)
    credit: loadgen.Credit = "none" if subscribers == 0 else ("sum" if queue else "min")
    with _Workers(ctx, subscribers) as w:
        if fake == "discard":
            w.start(loadgen.discard_main, host)
            port = w.wait("port", "discard", 0, READY_TIMEOUT)
        spec = loadgen.PubSpec(host, port, subject, size, p.duration, credit, window, serve=fake == "blaster")
        pub_role = "blaster" if spec.serve else "publisher"
        w.start(loadgen.publisher_main, spec)
        if spec.serve:
            port = w.wait("port", "blaster", 0, READY_TIMEOUT)
        for i in range(subscribers):
            w.start(loadgen.subscriber_main, loadgen.SubSpec(i, host, sub_port or port, subject, size, queue))
        for i in range(subscribers):
            w.wait("ready", "subscriber", i, READY_TIMEOUT)
        w.wait("ready", pub_role, 0, READY_TIMEOUT)
        if before_go is not None:
            before_go()
        cpu0 = cpu_seconds(pid) if pid else None
        w.shared.go.set()
        pub = w.wait("result", pub_role, 0, p.duration + 90.0)
        sent = pub["sent"]
        if subscribers:
            _wait_delivery(w.shared, subscribers, sent, queue is not None)
        cpu1 = cpu_seconds(pid) if pid else None
        w.shared.stop.value = 1
        subs = [w.wait("result", "subscriber", i, 30.0) for i in range(subscribers)]
    t_end = max([s["last_rx"] for s in subs], default=pub["t_end"])
    cpu = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
    if queue:
        check = check_exactly_once([s["collected"] for s in subs], sent)
        errors = [e for s in subs for e in s["errors"]]
        ok = check.ok and not errors
        if ok:
            counts = "/".join(str(s["frames"]) for s in subs)
            text = f"ok {check.unique} msgs exactly once ({counts})"
        else:
            text = (f"FAIL missing {check.missing} dup {check.duplicates} reordered {check.reordered}"
                    f" foreign {check.out_of_range}" + (f" errors: {errors[0]}" if errors else ""))
        delivered = check.unique
    elif subscribers:
        ok, delivered, text = _in_order_verdict(subs, sent)
    else:
        ok, delivered = True, 0
        text = f"ok {sent} msgs acknowledged by PONG" if not fake else f"ok {sent} msgs"
    return StreamOutcome(sent, pub["t0"], t_end, delivered, subs, ok, text, cpu)


def _in_order_verdict(subs: list[dict[str, Any]], sent: int) -> tuple[bool, int, str]:
    """(ok, delivered, text) for subscribers that must each have received 0 .. sent-1 in order."""
    bad = [s for s in subs if s["missing"] or s["duplicates"] or s["reordered"] or s["errors"]]
    ok = not bad and all(s["unique"] == sent for s in subs)
    delivered = sum(s["unique"] for s in subs)
    if ok:
        return ok, delivered, f"ok {delivered} msgs in order" + (f" ({len(subs)} subs)" if len(subs) > 1 else "")
    s = bad[0] if bad else subs[0]
    return ok, delivered, (f"FAIL sub {subs.index(s)}: missing {s['missing']} dup {s['duplicates']}"
                           f" reordered {s['reordered']}" + (f" errors: {s['errors'][0]}" if s["errors"] else ""))


def _wait_delivery(shared: loadgen.Shared, n: int, sent: int, summed: bool) -> None:
    """Wait until the subscribers have all ``sent`` frames, or until they stop making progress."""
    last_progress = time.monotonic()
    previous = -1
    while True:
        counts = [shared.counters[i] for i in range(n)]
        have = sum(counts) if summed else min(counts)
        if have >= sent:
            return
        now = time.monotonic()
        if have != previous:
            previous, last_progress = have, now
        elif now - last_progress > IDLE_TIMEOUT:
            return  # lost messages: the verdict will say so
        time.sleep(0.005)  # orchestrator polling shared counters; bounded by IDLE_TIMEOUT


# ------------------------------------------------------------------------------------------ scenarios


def _stream_result(name: str, row: str, size: int | None, target: Target, out: StreamOutcome,
                   per: int) -> Result:
    rate = (out.delivered if per else out.sent) / out.elapsed
    extra: dict[str, Any] = {"sent": out.sent, "delivered": out.delivered, "seconds": round(out.elapsed, 4)}
    if out.cpu is not None:
        extra["cpu_us_per_msg"] = out.cpu * 1e6 / max(1, out.delivered if per else out.sent)
        extra["cpu_seconds"] = out.cpu
    return Result(name, row, size, target.name, rate, "msg/s", verified=out.verified,
                  verify_text=out.verify_text, extra=extra)


def scenario_pub(ctx: Context, target: Target, size: int | None) -> list[Result]:
    assert size is not None
    out = run_stream(ctx, host=target.host, port=target.port, size=size, subscribers=0, pid=target.pid)
    return [_stream_result("pub", "pub", size, target, out, per=0)]


def scenario_pubsub(ctx: Context, target: Target, size: int | None) -> list[Result]:
    assert size is not None
    out = run_stream(ctx, host=target.host, port=target.port, size=size, subscribers=1, pid=target.pid)
    return [_stream_result("pubsub", "pubsub", size, target, out, per=1)]


def scenario_fanout(ctx: Context, target: Target, size: int | None) -> list[Result]:
    assert size is not None
    k = ctx.params.fanout
    out = run_stream(ctx, host=target.host, port=target.port, size=size, subscribers=k, pid=target.pid)
    return [_stream_result("fanout", f"fanout 1:{k}", size, target, out, per=1)]


def scenario_queue(ctx: Context, target: Target, size: int | None) -> list[Result]:
    assert size is not None
    k = ctx.params.queue
    out = run_stream(ctx, host=target.host, port=target.port, size=size, subscribers=k, queue="bench",
                     pid=target.pid)
    return [_stream_result("queue", f"queue 1:{k}", size, target, out, per=1)]


def _reqrep_once(ctx: Context, target: Target, concurrency: int) -> Result:
    p = ctx.params
    subject = ctx.subject("rr")
    size = 16
    row = "reqrep seq" if concurrency == 1 else f"reqrep c={concurrency}"
    with _Workers(ctx, 0) as w:
        w.start(loadgen.responder_main, target.host, target.port, subject)
        w.wait("ready", "responder", 0, READY_TIMEOUT)
        spec = loadgen.ReqSpec(target.host, target.port, subject, size, p.rr_duration, concurrency)
        w.start(loadgen.requester_main, spec)
        w.wait("ready", "requester", 0, READY_TIMEOUT)
        cpu0 = cpu_seconds(target.pid) if target.pid else None
        w.shared.go.set()
        res = w.wait("result", "requester", 0, p.rr_duration + 60.0)
        cpu1 = cpu_seconds(target.pid) if target.pid else None
    ok = res["lost"] == 0 and res["unexpected"] == 0 and res["completed"] > 0
    rate = res["completed"] / res["elapsed"] if res["elapsed"] > 0 else 0.0
    text = (f"ok {res['sent']} replies matched" if ok
            else f"FAIL lost {res['lost']} unexpected {res['unexpected']} of {res['sent']}")
    extra = {"rate": rate, "p90": res["p90"], "p99": res["p99"], "requests": res["sent"],
             "concurrency": concurrency}
    if cpu0 is not None and cpu1 is not None:
        extra["cpu_us_per_msg"] = (cpu1 - cpu0) * 1e6 / max(1, res["sent"])
    return Result("reqrep", row, size, target.name, res["p50"], "s", higher_is_better=False, verified=ok,
                  verify_text=text, extra=extra)


def scenario_reqrep(ctx: Context, target: Target, size: int | None) -> list[Result]:
    return [_reqrep_once(ctx, target, 1), _reqrep_once(ctx, target, ctx.params.concurrency)]


def _na(name: str, row: str, target: Target, why: str, unit: str, size: int | None = None) -> Result:
    return Result(name, row, size, target.name, None, unit, higher_is_better=False, verify_text=f"n/a: {why}")


def scenario_idle_rss(ctx: Context, target: Target, size: int | None) -> list[Result]:
    if target.pid is None:
        return [_na("idle-rss", "idle RSS", target, "needs --pid", "B")]
    rss = rss_bytes(target.pid)
    return [Result("idle-rss", "idle RSS", None, target.name, rss, "B", higher_is_better=False)]


def scenario_rss_per_conn(ctx: Context, target: Target, size: int | None) -> list[Result]:
    row = f"RSS/idle conn ({ctx.params.conns})"
    if target.pid is None:
        return [_na("rss-per-conn", row, target, "needs --pid", "B")]
    n = ctx.params.conns
    _raise_nofile(n + 64)
    before = rss_bytes(target.pid) or 0
    socks = open_idle_connections(target.host, target.port, n)
    try:
        after = rss_bytes(target.pid) or 0
    finally:
        for s in socks:
            s.close()
    per = (after - before) / n
    extra = {"rss_before": before, "rss_after": after, "connections": n}
    return [Result("rss-per-conn", row, None, target.name, per, "B", higher_is_better=False,
                   verified=True, verify_text=f"ok {n} conns answered PING", extra=extra)]


def scenario_startup(ctx: Context, target: Target, size: int | None) -> list[Result]:
    if target.argv is None:
        return [_na("startup", "startup", target, "needs a broker we start", "s")]
    times: list[float] = []
    for _ in range(ctx.params.startup_runs):
        try:
            broker: BrokerProcess = start_broker(target.name, target.argv, target.host)
        except ServerStartError as exc:
            return [Result("startup", "startup", None, target.name, None, "s", error=str(exc))]
        try:
            times.append(broker.ready_after or 0.0)
        finally:
            broker.stop()
    extra = {"runs": [round(t, 4) for t in times], "min": min(times)}
    return [Result("startup", "startup", None, target.name, statistics.median(times), "s",
                   higher_is_better=False, extra=extra)]


# ------------------------------------------------------------------------------- leaf and store-forward

LEAF_SIZE: Final = 128  # the leaf and store scenarios use the gateway message size
STORE_SUBJECT: Final = b"telemetry.gw1.sensor.temp"
_EDGE_ONLY: Final = "nats-edge only (no nats-server counterpart)"


def _hub_binary(ctx: Context) -> str:
    if not ctx.nats_server:
        raise ScenarioError(f"it needs nats-server as the hub; {NATS_SERVER_MISSING}")
    return ctx.nats_server


def _start(name: str, argv: ArgvFactory, stack: contextlib.ExitStack,
           ready: Callable[[str, int, float], bool] = probe) -> BrokerProcess:
    """start_broker, stopped when ``stack`` closes; a failure to start is a scenario error."""
    try:
        broker = start_broker(name, argv, ready=ready)
    except ServerStartError as exc:
        raise ScenarioError(str(exc)) from None
    stack.callback(broker.stop)
    return broker


def _leaf_argv(ctx: Context, target: Target, hub_leaf_port: int, conf_dir: Path) -> ArgvFactory:
    if target.name == "nats-server":
        return linked.nats_server_leaf_argv(_hub_binary(ctx), hub_leaf_port, conf_dir)
    toml = f'[[leafnodes.remotes]]\nurl = "nats-leaf://127.0.0.1:{hub_leaf_port}"\n'
    return linked.edge_config_argv(toml, conf_dir)


def scenario_leaf(ctx: Context, target: Target, size: int | None) -> list[Result]:
    """Gateway -> hub: a hub nats-server, the target started as its leaf; publisher on the leaf,
    subscriber on the hub; timed once a probe has crossed the link after the subscription was made."""
    size = LEAF_SIZE
    row = "leaf -> hub"
    if target.argv is None or target.name not in ("nats-server", "nats-edge"):
        return [_na("leaf", row, target, "needs a broker we start", "msg/s", LEAF_SIZE)]
    if not ctx.nats_server:  # a default scenario: without a hub binary it is skipped, not failed
        return [_na("leaf", row, target, "needs nats-server as the hub (--nats-server)", "msg/s", LEAF_SIZE)]
    binary = _hub_binary(ctx)
    probe: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-leaf-") as tmp, contextlib.ExitStack() as stack:
        hub_leaf_port = free_port()
        hub = _start("hub nats-server", linked.hub_argv(binary, hub_leaf_port, Path(tmp)), stack)
        leaf = _start(f"{target.name} (leaf)", _leaf_argv(ctx, target, hub_leaf_port, Path(tmp)), stack)

        def alive() -> bool:
            return hub.proc.poll() is None and leaf.proc.poll() is None

        def before_go() -> None:
            try:
                probe["seconds"] = linked.probe_route((leaf.host, leaf.port), (hub.host, hub.port), alive=alive)
            except (ServerStartError, OSError, loadgen.BenchError) as exc:
                raise ScenarioError(f"leaf link: {exc}") from None

        out = run_stream(ctx, host=leaf.host, port=leaf.port, sub_port=hub.port, size=size, subscribers=1,
                         pid=leaf.pid, before_go=before_go)
    r = _stream_result("leaf", row, size, target, out, per=1)
    r.extra["link_ready_s"] = round(probe.get("seconds", 0.0), 4)
    return [r]


def _store_dir(ctx: Context, prefix: str) -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix=prefix, dir=ctx.params.store_dir)


def _append_result(name: str, row: str, res: dict[str, Any], fs: str) -> Result:
    text = (f"ok {res['count']} msgs durable, {res['fsyncs']} fsyncs, {res['bytes_per_msg']:g} B/msg on {fs}"
            + (f", {res['busy']} BUSY waits" if res["busy"] else ""))
    return Result(name, row, res["size"], "nats-edge", float(res["msgs_per_s"]), "msg/s", verified=True,
                  verify_text=text, extra={**res, "filesystem": fs})


def _run_append(ctx: Context, **kw: Any) -> tuple[dict[str, Any], str]:
    from edge.store.bench import append_benchmark  # the broker's own code, only needed here

    with _store_dir(ctx, "bench-store-") as tmp:
        fs = linked.filesystem_of(tmp)
        try:
            res = append_benchmark(tmp, count=ctx.params.store_msgs, size=LEAF_SIZE, subject=STORE_SUBJECT, **kw)
        except (TimeoutError, RuntimeError) as exc:
            raise ScenarioError(f"outbox append: {exc}") from None
    return res, fs


def scenario_store_append(ctx: Context, target: Target, size: int | None) -> list[Result]:
    """Durable append rate into the outbox, at the default fsync cadence and with an fsync per batch."""
    rows = ("store append", "store append fsync/batch")
    if target.name == "nats-server":
        return [_na("store-append", row, target, _EDGE_ONLY, "msg/s", LEAF_SIZE) for row in rows]
    default, fs = _run_append(ctx)  # [store_forward] defaults: fsync_interval 100ms, fsync_every 1000
    each, _ = _run_append(ctx, fsync_interval=0.0, fsync_every=1)
    out = [_append_result("store-append", rows[0], default, fs), _append_result("store-append", rows[1], each, fs)]
    for r in out:
        r.target = target.name
    return out


def scenario_store_amp(ctx: Context, target: Target, size: int | None) -> list[Result]:
    """Bytes written to disk per record over its payload + subject bytes, at the default cadence."""
    row = "store write amp"
    if target.name == "nats-server":
        return [_na("store-amp", row, target, _EDGE_ONLY, "x", LEAF_SIZE)]
    res, fs = _run_append(ctx)
    content = LEAF_SIZE + len(STORE_SUBJECT)
    text = f"ok {res['count']} msgs: {res['bytes_written']} B written for {res['count'] * content} B of content"
    return [Result("store-amp", row, LEAF_SIZE, target.name, float(res["amplification"]), "x",
                   higher_is_better=False, verified=True, verify_text=text,
                   extra={**res, "content_bytes_per_msg": content, "filesystem": fs})]


def _gateway_toml(held_port: int, hub_leaf_port: int, subject: str, outbox: str) -> str:
    # The first URL is the HeldDial (never answers); once released the gateway waits `reconnect`
    # and dials the second, the hub, in that order (no_randomize).
    return f"""server_name = "bench-gw"

[leafnodes]
reconnect = "20ms"
reconnect_jitter = 0
first_info_timeout = "300s"

[[leafnodes.remotes]]
urls = ["nats-leaf://127.0.0.1:{held_port}", "nats-leaf://127.0.0.1:{hub_leaf_port}"]
no_randomize = true

[store_forward]
subjects = [{linked.toml_str(subject)}]
dir = {linked.toml_str(outbox)}
replay_rate = 0
confirm = "pong"
"""


def scenario_store_replay(ctx: Context, target: Target, size: int | None) -> list[Result]:
    """A gateway stores N records while its leaf link is down; then the hub is started and the link
    allowed up; timed from that moment until the hub's subscriber has all N, in order.

    The link is held down by a :class:`~edge.bench.linked.HeldDial` on the remote's first URL, so the
    hub's subscriber exists before the gateway can reach the hub (the forwarder sends regardless of
    interest). The time includes the gateway's 20 ms reconnect wait and the leaf handshake.
    """
    size = LEAF_SIZE
    row = "store replay -> hub"
    if target.name == "nats-server":
        return [_na("store-replay", row, target, _EDGE_ONLY, "msg/s", LEAF_SIZE)]
    if target.argv is None:
        return [_na("store-replay", row, target, "needs a gateway we start", "msg/s", LEAF_SIZE)]
    binary = _hub_binary(ctx)
    n = ctx.params.replay_msgs
    subject = ctx.subject("replay")
    with _store_dir(ctx, "bench-replay-") as tmp, contextlib.ExitStack() as stack:
        held = stack.enter_context(linked.HeldDial())
        hub_leaf_port = free_port()
        toml = _gateway_toml(held.port, hub_leaf_port, subject, str(Path(tmp) / "outbox"))
        gw = _start("nats-edge (gateway)", linked.edge_config_argv(toml, Path(tmp)), stack)
        try:
            held.wait_dial(READY_TIMEOUT, alive=lambda: gw.proc.poll() is None)
            fill = linked.publish_durable(gw.host, gw.port, subject, size, n)
        except (ServerStartError, OSError, loadgen.BenchError, ValueError) as exc:
            raise ScenarioError(f"storing {n} records: {exc}") from None
        hub = _start("hub nats-server", linked.hub_argv(binary, hub_leaf_port, Path(tmp)), stack)
        with _Workers(ctx, 1) as w:
            w.shared.total.value = n
            w.start(loadgen.subscriber_main, loadgen.SubSpec(0, hub.host, hub.port, subject, size))
            w.wait("ready", "subscriber", 0, READY_TIMEOUT)
            cpu0 = cpu_seconds(gw.pid)
            t0 = time.monotonic()
            held.release()  # the link may come up now
            _wait_delivery(w.shared, 1, n, False)
            cpu1 = cpu_seconds(gw.pid)
            w.shared.stop.value = 1
            sub = w.wait("result", "subscriber", 0, 30.0)
    ok = sub["unique"] == n and not (sub["missing"] or sub["duplicates"] or sub["reordered"] or sub["errors"])
    if ok:
        text = f"ok {n} stored msgs in order at the hub"
    else:
        text = (f"FAIL missing {sub['missing']} dup {sub['duplicates']} reordered {sub['reordered']} of {n}"
                + (f" errors: {sub['errors'][0]}" if sub["errors"] else ""))
    elapsed = max(sub["last_rx"] - t0, 1e-9)
    extra: dict[str, Any] = {"stored": n, "delivered": sub["unique"], "seconds": round(elapsed, 4),
                             "first_msg_after_s": round(sub["first_rx"] - t0, 4) if sub["first_rx"] else None,
                             "store_fill_s": round(fill, 4)}
    if cpu0 is not None and cpu1 is not None:
        extra["cpu_us_per_msg"] = (cpu1 - cpu0) * 1e6 / max(1, n)
    return [Result("store-replay", row, size, target.name, sub["unique"] / elapsed, "msg/s", verified=ok,
                   verify_text=text, extra=extra)]


def open_idle_connections(host: str, port: int, n: int, timeout: float = 60.0) -> list[socket.socket]:
    """Open ``n`` client connections that CONNECT + PING and then stay idle; returns once every one has
    its PONG (so the broker has fully set each up). Raises ScenarioError on failure or timeout."""
    deadline = time.monotonic() + timeout
    socks: list[socket.socket] = []
    sel = selectors.DefaultSelector()
    try:
        hello = connect_frame("bench-idle") + b"PING\r\n"
        for i in range(n):
            s = socket.create_connection((host, port), timeout=max(0.1, deadline - time.monotonic()))
            socks.append(s)
            # Read the INFO before the next connect, so the listen backlog never overflows.
            data = b""
            while b"\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    raise ScenarioError(f"connection {i} closed before INFO")
                data += chunk
            s.sendall(hello)
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, data)
        waiting = {s.fileno(): b"" for s in socks}
        while waiting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ScenarioError(f"{len(waiting)} of {n} idle connections got no PONG")
            for key, _ in sel.select(min(remaining, 1.0)):
                ready = key.fileobj
                assert isinstance(ready, socket.socket)
                chunk = ready.recv(65536)
                if not chunk:
                    raise ScenarioError("an idle connection was closed by the server")
                waiting[ready.fileno()] += chunk
                if b"PONG\r\n" in waiting[ready.fileno()]:
                    del waiting[ready.fileno()]
                    sel.unregister(ready)
        return socks
    except BaseException:
        for s in socks:
            s.close()
        raise
    finally:
        sel.close()


def _raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


# ------------------------------------------------------------------------------------------------ MQTT

MQTT_REFERENCE: Final = "mosquitto"
MOSQUITTO_MISSING: Final = "Mosquitto not found: apt-get install mosquitto (the broker, /usr/sbin/mosquitto)"
# QoS 1 messages in flight between the publisher and the subscriber. Mosquitto keeps 20 in flight per
# subscriber and queues at most 1000 more (max_queued_messages), dropping beyond: a larger window would
# measure its drops, not its rate.
MQTT_QOS1_WINDOW: Final = 1000


def run_mqtt_stream(ctx: Context, *, host: str, port: int, size: int, qos: int, subscribers: int,
                    pid: int | None = None, fake: str | None = None) -> StreamOutcome:
    """:func:`run_stream` for MQTT: one publisher at ``qos`` (0 or 1), ``subscribers`` subscribers at the
    same QoS on one topic, verified in order (and at QoS 1 every PUBACK, in order)."""
    p = ctx.params
    topic = ctx.subject("mqtt").replace(".", "/")
    if qos:
        window, batch = MQTT_QOS1_WINDOW, MQTT_QOS1_WINDOW // 4
    else:
        window, batch = max(1, p.window_bytes // (len(topic) + size + 6)), None
    with _Workers(ctx, subscribers) as w:
        if fake == "discard":
            w.start(mqtt_load.mqtt_discard_main, host)
            port = w.wait("port", "discard", 0, READY_TIMEOUT)
        spec = mqtt_load.MqttPubSpec(host, port, topic, size, qos, p.duration, "min" if subscribers else "none",
                                     window, batch, serve=fake == "blaster")
        pub_role = "blaster" if spec.serve else "publisher"
        w.start(mqtt_load.mqtt_publisher_main, spec)
        if spec.serve:
            port = w.wait("port", "blaster", 0, READY_TIMEOUT)
        for i in range(subscribers):
            w.start(mqtt_load.mqtt_subscriber_main, mqtt_load.MqttSubSpec(i, host, port, topic, size, qos))
        for i in range(subscribers):
            w.wait("ready", "subscriber", i, READY_TIMEOUT)
        w.wait("ready", pub_role, 0, READY_TIMEOUT)
        cpu0 = cpu_seconds(pid) if pid else None
        w.shared.go.set()
        pub = w.wait("result", pub_role, 0, p.duration + 90.0)
        sent = pub["sent"]
        if subscribers:
            _wait_delivery(w.shared, subscribers, sent, False)
        cpu1 = cpu_seconds(pid) if pid else None
        w.shared.stop.value = 1
        subs = [w.wait("result", "subscriber", i, 30.0) for i in range(subscribers)]
    t_end = max([s["last_rx"] for s in subs], default=pub["t_end"])
    cpu = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
    if subscribers:
        ok, delivered, text = _in_order_verdict(subs, sent)
    else:
        ok, delivered, text = True, 0, f"ok {sent} msgs, then PINGRESP" if not fake else f"ok {sent} msgs"
    if qos and not fake:
        ok = ok and pub["acked"] == sent
        text += f", {pub['acked']}/{sent} PUBACKs in order"
    return StreamOutcome(sent, pub["t0"], t_end, delivered, subs, ok, text, cpu)


def _start_mqtt(label: str, conf_dir: Path, stack: contextlib.ExitStack, *, mqtt: bool = True) -> Target:
    """Mosquitto, or nats-edge with (``mqtt``) or without an [mqtt] listener on a free port; the Target's
    port is the MQTT port (the NATS port for nats-edge without MQTT), ready for a client."""
    if label == MQTT_REFERENCE:
        binary = find_mosquitto()
        if binary is None:
            raise ScenarioError(MOSQUITTO_MISSING)
        b = _start(MQTT_REFERENCE, mosquitto_argv(binary, conf_dir), stack, ready=mqtt_probe)
        return Target(label, b.host, b.port, b.pid)
    mqtt_port = free_port()
    toml = 'server_name = "bench-mqtt"\n'
    if mqtt:
        toml += f"[mqtt]\nport = {mqtt_port}\ndir = {linked.toml_str(str(conf_dir / 'mqtt'))}\n"
    name = "mqtt-on" if mqtt else "mqtt-off"
    b = _start(f"nats-edge ({name})", linked.edge_config_argv(toml, conf_dir, name), stack)
    if not mqtt:
        return Target(label, b.host, b.port, b.pid)
    try:
        wait_ready(b.host, mqtt_port, proc=b.proc, ready=mqtt_probe)
    except ServerStartError as exc:
        raise ScenarioError(f"nats-edge MQTT listener: {exc}") from None
    return Target(label, b.host, mqtt_port, b.pid)


def _mqtt_skip(name: str, row: str, target: Target, unit: str, size: int | None) -> list[Result] | None:
    """MQTT scenarios run once per run, on the nats-edge target, against a Mosquitto they start."""
    if target.name == "nats-server":
        return []  # its MQTT listener needs JetStream: the reference here is Mosquitto
    if target.name != "nats-edge" or target.argv is None:
        return [_na(name, row, target, "needs a nats-edge we start", unit, size)]
    if find_mosquitto() is None:
        return [_na(name, row, target, MOSQUITTO_MISSING, unit, size)]
    return None


def _mqtt_stream_scenario(name: str, row: str, qos: int, subscribers: int, ctx: Context, target: Target,
                          size: int | None) -> list[Result]:
    assert size is not None
    skipped = _mqtt_skip(name, row, target, "msg/s", size)
    if skipped is not None:
        return skipped
    out: list[Result] = []
    for label in (MQTT_REFERENCE, "nats-edge"):
        with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp, contextlib.ExitStack() as stack:
            broker = _start_mqtt(label, Path(tmp), stack)
            res = run_mqtt_stream(ctx, host=broker.host, port=broker.port, size=size, qos=qos,
                                  subscribers=subscribers, pid=broker.pid)
        out.append(_stream_result(name, row, size, broker, res, per=subscribers))
    return out


def scenario_mqtt_pub(ctx: Context, target: Target, size: int | None) -> list[Result]:
    return _mqtt_stream_scenario("mqtt-pub", "mqtt pub qos0", 0, 0, ctx, target, size)


def scenario_mqtt_pubsub(ctx: Context, target: Target, size: int | None) -> list[Result]:
    return _mqtt_stream_scenario("mqtt-pubsub", "mqtt pubsub qos0", 0, 1, ctx, target, size)


def scenario_mqtt_qos1(ctx: Context, target: Target, size: int | None) -> list[Result]:
    return _mqtt_stream_scenario("mqtt-qos1", "mqtt pubsub qos1", 1, 1, ctx, target, size)


def scenario_mqtt_idle_rss(ctx: Context, target: Target, size: int | None) -> list[Result]:
    """RSS of a fresh nats-edge with the MQTT listener on (after one MQTT client came and went) and of
    one with it off (after one NATS client), and Mosquitto's for reference; the growth has a target."""
    rows = ("mqtt idle RSS", "mqtt RSS growth")
    skipped = _mqtt_skip("mqtt-idle-rss", rows[0], target, "B", None)
    if skipped is not None:
        return skipped
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-rss-") as tmp, contextlib.ExitStack() as stack:
        off = _start_mqtt("nats-edge", Path(tmp), stack, mqtt=False)
        on = _start_mqtt("nats-edge", Path(tmp), stack)
        mosq = _start_mqtt(MQTT_REFERENCE, Path(tmp), stack)
        assert off.pid and on.pid and mosq.pid
        rss_off, rss_on, rss_mosq = rss_bytes(off.pid), rss_bytes(on.pid), rss_bytes(mosq.pid)
    if rss_off is None or rss_on is None:
        return [_na("mqtt-idle-rss", rows[0], target, "no /proc figures", "B")]
    extra = {"rss_mqtt_on": rss_on, "rss_mqtt_off": rss_off}
    return [
        Result("mqtt-idle-rss", rows[0], None, MQTT_REFERENCE, rss_mosq, "B", higher_is_better=False),
        Result("mqtt-idle-rss", rows[0], None, "nats-edge", rss_on, "B", higher_is_better=False, extra=extra),
        Result("mqtt-idle-rss", rows[1], None, "nats-edge", rss_on - rss_off, "B", higher_is_better=False,
               verify_text=f"on {rss_on / 1e6:.1f} MB - off {rss_off / 1e6:.1f} MB", extra=extra),
    ]


def mqtt_generator_ceiling(ctx: Context, size: int, host: str = "127.0.0.1") -> dict[str, float]:
    """The MQTT generator's own limits for ``size`` (msgs/s): a QoS 0 publisher into a discarding fake
    broker, and a subscriber fed by a blasting fake broker at QoS 0 and at QoS 1 (acking every message)."""
    pub = run_mqtt_stream(ctx, host=host, port=0, size=size, qos=0, subscribers=0, fake="discard")
    out = {"publisher": pub.sent / pub.elapsed}
    for qos, key in ((0, "subscriber"), (1, "subscriber_qos1")):
        sub = run_mqtt_stream(ctx, host=host, port=0, size=size, qos=qos, subscribers=1, fake="blaster")
        if not sub.verified:
            raise ScenarioError(f"MQTT generator self-test failed (QoS {qos}): {sub.verify_text}")
        out[key] = sub.delivered / sub.elapsed
    return out


# Order matters: idle RSS is read before any load has grown the broker.
SCENARIOS: Final[dict[str, Scenario]] = {
    "startup": Scenario(scenario_startup, False, "time from spawn until a PING is answered"),
    "idle-rss": Scenario(scenario_idle_rss, False, "broker RSS with no clients"),
    "rss-per-conn": Scenario(scenario_rss_per_conn, False, "RSS growth per idle connection"),
    "pub": Scenario(scenario_pub, True, "ingest: one publisher, no subscribers"),
    "pubsub": Scenario(scenario_pubsub, True, "one publisher, one subscriber"),
    "fanout": Scenario(scenario_fanout, True, "one publisher, K subscribers (delivered rate)"),
    "queue": Scenario(scenario_queue, True, "one publisher, a queue group of K, exactly once"),
    "reqrep": Scenario(scenario_reqrep, False, "request-reply latency, sequential and concurrent"),
    "leaf": Scenario(scenario_leaf, False, "128 B gateway -> hub, the broker as leaf of a hub nats-server"),
    "mqtt-idle-rss": Scenario(scenario_mqtt_idle_rss, False, "nats-edge RSS with the MQTT listener on vs off"),
    "mqtt-pub": Scenario(scenario_mqtt_pub, True, "MQTT QoS 0 ingest, nats-edge vs Mosquitto"),
    "mqtt-pubsub": Scenario(scenario_mqtt_pubsub, True, "MQTT QoS 0 one publisher, one subscriber, vs Mosquitto"),
    "mqtt-qos1": Scenario(scenario_mqtt_qos1, True, "MQTT QoS 1 pub -> sub, PUBACKs both ways, vs Mosquitto"),
    "store-append": Scenario(scenario_store_append, False,
                             "(opt-in) outbox durable appends, 128 B, default fsync + per batch", default=False),
    "store-amp": Scenario(scenario_store_amp, False,
                          "(opt-in) disk bytes written per 128 B record / payload+subject", default=False),
    "store-replay": Scenario(scenario_store_replay, False,
                             "(opt-in) records stored while the link is down, replayed to a hub", default=False),
}


def generator_ceiling(ctx: Context, size: int, host: str = "127.0.0.1") -> dict[str, float]:
    """The load generator's own limits for ``size``: a publisher into a discarding fake server and a
    subscriber fed by a blasting fake server (msgs/s). A broker can only be measured below these."""
    pub = run_stream(ctx, host=host, port=0, size=size, subscribers=0, fake="discard")
    sub = run_stream(ctx, host=host, port=0, size=size, subscribers=1, fake="blaster")
    if not sub.verified:
        raise ScenarioError(f"generator self-test failed: {sub.verify_text}")
    return {"publisher": pub.sent / pub.elapsed, "subscriber": sub.delivered / sub.elapsed}
