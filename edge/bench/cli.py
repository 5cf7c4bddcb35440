"""``nats-edge bench``: measure nats-edge, nats-server, or both side by side.

Modes: by default start nats-edge and measure it; ``--target nats-server`` measures nats-server alone;
``--url`` measures a running server (``--pid`` adds its RSS and CPU); ``--compare`` starts both on free
ports and runs every scenario on each in turn with the same parameters, printing their ratio and the
project's targets. Exit status: 0 when every scenario ran and verified (missed targets are reported,
and only fail the run with ``--check-targets``), 1 on a verification failure, a scenario error or a
broker that would not start, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from functools import partial
from typing import Any, Final

from edge.bench import report
from edge.bench.scenarios import (
    LEAF_SIZE,
    SCENARIOS,
    Context,
    Params,
    Result,
    ScenarioError,
    Target,
    generator_ceiling,
    mqtt_generator_ceiling,
)
from edge.bench.servers import (
    NATS_SERVER_MISSING,
    ArgvFactory,
    BrokerProcess,
    ServerStartError,
    edge_argv,
    find_nats_server,
    nats_server_argv,
    parse_url,
    start_broker,
)
from edge.bench.wire import MIN_PAYLOAD

PROG: Final = "nats-edge bench"
DEFAULT_SIZES: Final = (16, 128, 1024)
QUICK_SIZES: Final = (16,)


def _csv_ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < MIN_PAYLOAD or v > 1024 * 1024 for v in values):
        raise argparse.ArgumentTypeError(f"sizes must be between {MIN_PAYLOAD} and 1048576 bytes")
    return values


def _csv_scenarios(text: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    if "all" in names:  # every scenario, the opt-in ones included
        names = tuple(SCENARIOS) + tuple(n for n in names if n != "all")
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    return names


def _positive(kind: type[float] | type[int]) -> Any:
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError("must be positive")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    scenario_help = "\n".join(f"  {name:<13} {s.help}" for name, s in SCENARIOS.items())
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Benchmark nats-edge (and nats-server side by side with --compare). "
        "Every message is numbered and checked for loss, duplication and reordering.",
        epilog=f"scenarios (default: all but the opt-in ones, in this order; 'all' adds those):\n{scenario_help}\n\n"
        "The store-* scenarios measure nats-edge's outbox, which nats-server does not have: they report\n"
        "absolute figures against the project's targets, not ratios. They write to --store-dir.\n"
        "The mqtt-* scenarios start their own nats-edge with an [mqtt] listener and a Mosquitto\n"
        "(/usr/sbin/mosquitto) on free ports and report nats-edge / Mosquitto ratios.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--compare", action="store_true", help="start nats-server and nats-edge and compare them")
    mode.add_argument("--url", metavar="URL", help="benchmark a running server at nats://HOST:PORT")
    mode.add_argument("--target", choices=["nats-edge", "nats-server"], default="nats-edge",
                      help="which broker to start when neither --compare nor --url is given")
    p.add_argument("--pid", type=int, help="with --url: the server's pid, for RSS and CPU figures")
    p.add_argument("--scenarios", type=_csv_scenarios, metavar="LIST",
                   help="comma-separated scenario names (listed below); 'all' adds the opt-in store-* ones")
    p.add_argument("--sizes", type=_csv_ints, metavar="LIST",
                   help=f"payload sizes in bytes (default {','.join(map(str, DEFAULT_SIZES))}; --quick: 16)")
    p.add_argument("--duration", type=_positive(float), metavar="S", help="seconds per throughput run")
    p.add_argument("--fanout", type=_positive(int), default=4, metavar="K", help="fan-out subscribers (4)")
    p.add_argument("--queue", type=_positive(int), default=4, metavar="K", help="queue group members (4)")
    p.add_argument("--concurrency", type=_positive(int), default=16, metavar="N",
                   help="concurrent requests for reqrep (16)")
    p.add_argument("--conns", type=_positive(int), metavar="N", help="idle connections for rss-per-conn (500)")
    p.add_argument("--repeat", type=_positive(int), default=1, metavar="N",
                   help="run each measurement N times (alternating targets) and report the median")
    p.add_argument("--store-msgs", type=_positive(int), metavar="N",
                   help="records per store-append / store-amp run (200000; --quick: 20000)")
    p.add_argument("--replay-msgs", type=_positive(int), metavar="N",
                   help="records stored then replayed by store-replay (100000; --quick: 10000)")
    p.add_argument("--store-dir", metavar="DIR",
                   help="directory (on the disk to measure) for the store scenarios' outboxes (system temp)")
    p.add_argument("--quick", action="store_true", help="a short smoke run (~15-30 s with --compare)")
    p.add_argument("--no-ceiling", action="store_true", help="skip measuring the load generator's own ceiling")
    p.add_argument("--nats-server", metavar="PATH", help="nats-server binary (default: PATH, then next to python)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    p.add_argument("--check-targets", action="store_true", help="exit 1 when a target is missed")
    return p


def _params(args: argparse.Namespace) -> Params:
    quick = args.quick
    duration = args.duration or (0.4 if quick else 1.5)
    return Params(
        duration=duration,
        fanout=args.fanout,
        queue=args.queue,
        concurrency=args.concurrency,
        rr_duration=duration if args.duration else (0.4 if quick else 1.5),
        conns=args.conns or (100 if quick else 500),
        startup_runs=1 if quick else 3,
        store_msgs=args.store_msgs or (20_000 if quick else 200_000),
        replay_msgs=args.replay_msgs or (10_000 if quick else 100_000),
        store_dir=args.store_dir,
    )


def _median_result(runs: list[Result]) -> Result:
    """The run with the median figure; a failed or erroring run wins, so failures are never hidden."""
    bad = [r for r in runs if r.error or r.verified is False]
    if bad:
        return bad[0]
    valued = sorted((r for r in runs if r.value is not None), key=lambda r: r.value or 0.0)
    if not valued:
        return runs[0]
    chosen = valued[(len(valued) - 1) // 2]
    if len(runs) > 1:
        chosen = replace(chosen, extra={**chosen.extra, "runs": [r.value for r in runs]})
    return chosen


def _run_one(ctx: Context, name: str, target: Target, size: int | None, broker: BrokerProcess | None) -> list[Result]:
    if broker is not None and broker.proc.poll() is not None:
        return [Result(name, name, size, target.name, None, "", error=f"{target.name} exited "
                       f"(status {broker.proc.returncode})")]
    try:
        return SCENARIOS[name].fn(ctx, target, size)
    except (ScenarioError, OSError) as exc:
        return [Result(name, name, size, target.name, None, "", error=str(exc))]


def _say(line: str = "") -> None:
    print(line, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``nats-edge bench ARGS``; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # argparse: 0 for --help, 2 for usage errors
        return int(exc.code or 0)
    if args.pid is not None and not args.url:
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: --pid needs --url", file=sys.stderr)
        return 2
    params = _params(args)
    if params.store_dir:  # a fresh mount point or a path on the card to measure: make it, as mkdir -p
        try:
            os.makedirs(params.store_dir, exist_ok=True)
        except OSError as exc:
            print(f"{PROG}: --store-dir {params.store_dir}: cannot create it: {exc.strerror}", file=sys.stderr)
            return 1
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    names = args.scenarios or tuple(n for n, s in SCENARIOS.items() if s.default)
    names = tuple(n for n in SCENARIOS if n in names)  # registry order: idle RSS before any load

    brokers: list[BrokerProcess] = []
    targets: list[Target] = []
    try:
        if args.url:
            try:
                host, port = parse_url(args.url)
            except ValueError as exc:
                print(f"{PROG}: error: {exc}", file=sys.stderr)
                return 2
            targets.append(Target("url", host, port, args.pid))
        else:
            wanted = ["nats-server", "nats-edge"] if args.compare else [args.target]
            binary = args.nats_server or find_nats_server()
            for name in wanted:
                factory: ArgvFactory
                if name == "nats-server":
                    if binary is None:
                        print(f"{PROG}: {NATS_SERVER_MISSING}", file=sys.stderr)
                        return 1

                    factory = partial(nats_server_argv, binary)
                else:
                    factory = edge_argv
                broker = start_broker(name, factory)
                brokers.append(broker)
                build = broker.edge_build() if name == "nats-edge" else None
                targets.append(Target(name, broker.host, broker.port, broker.pid, factory, build))
                _say(f"started {name} at {broker.url} (pid {broker.pid}, ready after {broker.ready_after:.3f} s"
                     + (f", {build} build)" if build else ")"))
        return _run(args, params, sizes, names, targets, brokers)
    except ServerStartError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        for b in brokers:
            b.stop()


def _run(args: argparse.Namespace, params: Params, sizes: Sequence[int], names: Sequence[str],
         targets: list[Target], brokers: list[BrokerProcess]) -> int:
    ctx = Context(params, nats_server=args.nats_server or find_nats_server())
    started = time.monotonic()
    by_name = {b.name: b for b in brokers}
    _say(f"scenarios: {', '.join(names)}; sizes: {', '.join(map(str, sizes))} B; "
         f"{params.duration:g} s per run; fanout K={params.fanout}, queue K={params.queue}")

    ceilings: dict[int, dict[str, float]] = {}
    mqtt_ceilings: dict[int, dict[str, float]] = {}
    ceiling_sizes = list(sizes) if any(SCENARIOS[n].sized and not n.startswith("mqtt-") for n in names) else []
    if "leaf" in names and LEAF_SIZE not in ceiling_sizes:  # leaf always runs at 128 B
        ceiling_sizes.append(LEAF_SIZE)
    if ceiling_sizes and not args.no_ceiling:
        for csize in ceiling_sizes:
            try:
                ceilings[csize] = generator_ceiling(ctx, csize)
            except ScenarioError as exc:
                print(f"{PROG}: load generator self-test failed: {exc}", file=sys.stderr)
                return 1
            c = ceilings[csize]
            _say(f"generator ceiling {csize} B: publisher {c['publisher'] / 1e6:.2f} M msg/s into a discard "
                 f"server; subscriber {c['subscriber'] / 1e6:.2f} M msg/s from a blaster")
    if any(SCENARIOS[n].sized and n.startswith("mqtt-") for n in names) and not args.no_ceiling:
        for csize in sizes:
            try:
                mqtt_ceilings[csize] = c = mqtt_generator_ceiling(ctx, csize)
            except ScenarioError as exc:
                print(f"{PROG}: MQTT load generator self-test failed: {exc}", file=sys.stderr)
                return 1
            _say(f"MQTT generator ceiling {csize} B: publisher {c['publisher'] / 1e6:.2f} M msg/s into a discard "
                 f"broker; subscriber {c['subscriber'] / 1e6:.2f} M msg/s (QoS 0), "
                 f"{c['subscriber_qos1'] / 1e6:.2f} M msg/s (QoS 1, acking) from a blaster")

    results: list[Result] = []
    for name in names:
        for size in (sizes if SCENARIOS[name].sized else (None,)):
            runs: dict[str, list[Result]] = {t.name: [] for t in targets}
            for rep in range(args.repeat):
                order = targets if rep % 2 == 0 else list(reversed(targets))
                for target in order:
                    for r in _run_one(ctx, name, target, size, by_name.get(target.name)):
                        runs[target.name].append(r)
            for target in targets:
                # A scenario may report for a reference it started itself (MQTT: Mosquitto).
                grouped: dict[tuple[str, tuple[str, int | None]], list[Result]] = {}
                for r in runs[target.name]:
                    grouped.setdefault((r.target, r.key), []).append(r)
                for group in grouped.values():
                    r = _median_result(group)
                    results.append(r)
                    status = f"ERROR {r.error}" if r.error else r.verify_text
                    _say(f"  {r.row:<24} {report.fmt_size(r.size):>7}  {r.target:<11} "
                         f"{report.fmt_value(r):<30} {status}")

    subject = "nats-edge" if any(t.name == "nats-edge" for t in targets) else targets[0].name
    reference = "nats-server" if subject == "nats-edge" and len(targets) == 2 else None
    # The targets are nats-edge's; nats-server measured alone has none to meet.
    build = next((t.build for t in targets if t.name == subject), None)
    checks = report.evaluate_goals(results, subject, reference, build) if subject != "nats-server" else []
    _say()
    if subject == "nats-edge":  # the throughput targets differ by build (issue 17)
        _say(f"nats-edge build: {build or 'unknown'}" + (f" (the targets below are the {build} build's)" if build
             else " (build-specific targets not judged)"))
    mqtt_rows = [r for r in results if r.scenario.startswith("mqtt-")]
    nats_rows = [r for r in results if not r.scenario.startswith("mqtt-")]
    if nats_rows:
        for line in report.render_table(nats_rows, [t.name for t in targets], checks):
            _say(line)
    if mqtt_rows:
        _say()
        _say("MQTT (nats-edge's [mqtt] listener against Mosquitto, both started by this run):")
        for line in report.render_table(mqtt_rows, ["mosquitto", "nats-edge"], checks):
            _say(line)
    if any(r.scenario.startswith("store-") for r in results):
        _say("store-* rows are nats-edge only (nats-server has no outbox): absolute figures against the "
             "targets, no ratio")
    if ceilings:
        _say()
        for size, c in ceilings.items():
            best_pub = max((r.value or 0.0 for r in results if r.scenario == "pub" and r.size == size), default=0)
            best_sub = max((r.value or 0.0 for r in results if r.scenario in ("pubsub", "leaf") and r.size == size),
                           default=0)
            parts = []
            if best_pub:
                parts.append(f"publisher {c['publisher'] / best_pub:.1f}x the fastest pub rate")
            if best_sub:
                parts.append(f"subscriber {c['subscriber'] / best_sub:.1f}x the fastest pubsub/leaf rate")
            if parts:
                low = min(c["publisher"] / best_pub if best_pub else math.inf,
                          c["subscriber"] / best_sub if best_sub else math.inf) < 2.0
                note = " (under 2x: these rates are partly generator-bound, read them as lower bounds)"
                _say(f"generator headroom {size} B: " + "; ".join(parts) + (note if low else ""))
    for size, c in mqtt_ceilings.items():
        def best(scenario: str, size: int = size) -> float:
            return max((r.value or 0.0 for r in mqtt_rows if r.scenario == scenario and r.size == size), default=0)
        ratios = [(name, c[key] / best(scn)) for name, key, scn in (
            ("publisher", "publisher", "mqtt-pub"), ("QoS 0 subscriber", "subscriber", "mqtt-pubsub"),
            ("QoS 1 subscriber", "subscriber_qos1", "mqtt-qos1")) if best(scn)]
        if ratios:
            low = min(x for _, x in ratios) < 2.0
            note = " (under 2x: partly generator-bound, read as lower bounds)"
            _say(f"MQTT generator headroom {size} B: "
                 + "; ".join(f"{name} {x:.1f}x the fastest rate" for name, x in ratios) + (note if low else ""))

    failures = [r for r in results if r.error or r.verified is False]
    missed = [c for c in checks if c.met is False]
    _say()
    for r in failures:
        _say(f"FAIL {r.row} {report.fmt_size(r.size)} on {r.target}: {r.error or r.verify_text}")
    if missed:
        _say("targets missed: " + ", ".join(
            " ".join(filter(None, (c.row, report.fmt_size(c.size), f"({c.label})"))) for c in missed))
    verdict = "all scenarios verified" if not failures else f"{len(failures)} scenario(s) FAILED"
    _say(f"{verdict}; {sum(c.met is True for c in checks)}/{len(checks)} targets met; "
         f"{time.monotonic() - started:.0f} s")

    code = 1 if failures or (args.check_targets and missed) else 0
    if args.json:
        _write_json(args.json, params, sizes, targets,
                    {**ceilings, **{f"mqtt-{k}": v for k, v in mqtt_ceilings.items()}}, results, checks, code)
    return code


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _write_json(path: str, params: Params, sizes: Sequence[int], targets: Sequence[Target],
                ceilings: dict[Any, dict[str, float]], results: Sequence[Result],
                checks: Sequence[report.GoalCheck], code: int) -> None:
    doc = {
        "tool": "nats-edge bench",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "params": asdict(params),
        "sizes": list(sizes),
        "targets": [{"name": t.name, "url": f"nats://{t.host}:{t.port}", "pid": t.pid, "build": t.build}
                    for t in targets],
        "generator_ceiling": {str(k): v for k, v in ceilings.items()},
        "results": [asdict(r) for r in results],
        "targets_checked": [asdict(c) for c in checks],
        "exit_code": code,
        "python": sys.version.split()[0],
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(_clean(doc), f, indent=2)
        f.write("\n")
