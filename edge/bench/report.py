"""Targets (the project's goals for nats-edge) and the text table. Pure functions over results.

Units are decimal (1 MB = 10^6 bytes, 1 KB = 10^3 bytes), the stricter reading of the targets, except
the idle-RSS budget: 25 MiB, as nats-server reads "25MB" and as the README and the idle-RSS test state it
(25 MiB = 26.2 MB, and the label says both).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from edge.bench.scenarios import Result

__all__ = ["GOALS", "Goal", "GoalCheck", "evaluate_goals", "fmt_size", "fmt_value", "render_table"]

EDGE: Final = "nats-edge"
SERVER: Final = "nats-server"


@dataclass(frozen=True)
class Goal:
    """``ratio_min``/``ratio_max``: nats-edge's figure over nats-server's, measured in the same run.
    ``abs_min``/``abs_max``: nats-edge's own figure (in the row's unit), for rows with no nats-server
    counterpart or an absolute budget. ``row``, when set, picks one row of a multi-row scenario."""

    scenario: str
    size: int | None
    kind: Literal["ratio_min", "ratio_max", "abs_min", "abs_max"]
    bound: float
    label: str
    row: str | None = None
    against: str = "nats-server"  # the reference of a ratio goal (MQTT rows: Mosquitto)
    build: Build | None = None  # the nats-edge build the goal is for; None: either


Build = Literal["compiled", "pure"]
MiB: Final = 1 << 20

GOALS: Final[tuple[Goal, ...]] = (
    # Throughput (issue 17): the compiled build's targets, and the pure build's floor (no regression).
    Goal("pub", 16, "ratio_min", 0.6, ">= 0.6x", build="compiled"),
    Goal("pubsub", 16, "ratio_min", 0.5, ">= 0.5x", build="compiled"),
    Goal("pubsub", 1024, "ratio_min", 0.6, ">= 0.6x", build="compiled"),
    Goal("fanout", 16, "ratio_min", 0.5, ">= 0.5x", build="compiled"),
    Goal("queue", 16, "ratio_min", 0.5, ">= 0.5x", build="compiled"),
    Goal("leaf", 128, "ratio_min", 0.6, ">= 0.6x", build="compiled"),
    Goal("pub", 16, "ratio_min", 0.30, ">= 0.30x", build="pure"),
    Goal("pubsub", 16, "ratio_min", 0.30, ">= 0.30x", build="pure"),
    Goal("pubsub", 1024, "ratio_min", 0.35, ">= 0.35x", build="pure"),
    Goal("fanout", 16, "ratio_min", 0.30, ">= 0.30x", build="pure"),
    Goal("queue", 16, "ratio_min", 0.30, ">= 0.30x", build="pure"),
    Goal("leaf", 128, "ratio_min", 0.30, ">= 0.30x", build="pure"),
    Goal("reqrep", 16, "ratio_max", 1.5, "p50 <= 1.5x"),
    Goal("idle-rss", None, "abs_max", 25 * MiB, "<= 25 MiB (26.2 MB)"),
    Goal("rss-per-conn", None, "abs_max", 16e3, "<= 16 kB"),
    Goal("startup", None, "abs_max", 0.5, "<= 0.5 s"),
    # nats-edge only (the outbox has no nats-server counterpart): absolute figures.
    Goal("store-append", 128, "abs_min", 100e3, "abs >= 100k msg/s", row="store append"),
    Goal("store-amp", 128, "abs_max", 1.5, "abs <= 1.5x"),
    Goal("store-replay", 128, "abs_min", 50e3, "abs >= 50k msg/s"),
    # MQTT (issue 15): against Mosquitto started in the same run.
    Goal("mqtt-pub", 16, "ratio_min", 0.5, ">= 0.5x", against="mosquitto"),
    Goal("mqtt-pub", 1024, "ratio_min", 0.5, ">= 0.5x", against="mosquitto"),
    Goal("mqtt-pubsub", 16, "ratio_min", 0.5, ">= 0.5x", against="mosquitto"),
    Goal("mqtt-pubsub", 1024, "ratio_min", 0.5, ">= 0.5x", against="mosquitto"),
    Goal("mqtt-qos1", 16, "ratio_min", 0.5, ">= 0.5x", against="mosquitto"),
    Goal("mqtt-idle-rss", None, "abs_max", 3e6, "<= 3 MB", row="mqtt RSS growth"),
)


@dataclass(frozen=True)
class GoalCheck:
    row: str
    size: int | None
    label: str
    met: bool | None  # None: could not be judged (a figure is missing)
    observed: float | None


def _goal_for(r: Result, build: str | None) -> Goal | None:
    return next((g for g in GOALS if g.scenario == r.scenario and g.size == r.size and g.row in (None, r.row)
                 and g.build in (None, build)), None)


def evaluate_goals(results: Sequence[Result], subject: str, reference: str | None,
                   build: str | None) -> list[GoalCheck]:
    """Judge ``subject``'s rows (nats-edge, or the single target measured) against :data:`GOALS`.

    Ratio goals need their reference measured in the same run: ``reference`` (nats-server) for most,
    the goal's ``against`` target (Mosquitto, which the MQTT scenarios start themselves) for MQTT rows.
    ``build`` (nats-edge's, when known) picks the build-specific goals; unknown, they are not judged.
    """
    by_key = {(r.target, r.key): r for r in results}
    checks: list[GoalCheck] = []
    seen: set[tuple[str, int | None]] = set()
    for r in results:
        if r.target != subject or r.key in seen:
            continue
        goal = _goal_for(r, build)
        if goal is None:
            continue
        seen.add(r.key)
        observed: float | None = None
        if goal.kind in ("abs_min", "abs_max"):
            observed = r.value
        elif (ref_name := reference if goal.against == SERVER else goal.against) is not None:
            ref = by_key.get((ref_name, r.key))
            if ref is not None and ref.value and r.value is not None:
                observed = r.value / ref.value
        if observed is None:
            checks.append(GoalCheck(r.row, r.size, goal.label, None, None))
            continue
        met = observed >= goal.bound if goal.kind in ("ratio_min", "abs_min") else observed <= goal.bound
        checks.append(GoalCheck(r.row, r.size, goal.label, met, observed))
    return checks


# ------------------------------------------------------------------------------------------ formatting


def _si(x: float, unit: str, sep: str = "") -> str:
    """``3.77 M msg/s`` (``sep=" "``) or ``14.6 MB``."""
    for div, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g} {prefix}{sep}{unit}"
    return f"{x:.3g} {unit}"


def _duration(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def fmt_value(r: Result) -> str:
    """A result's figure for a table cell."""
    if r.error:
        return "ERROR"
    if r.value is None or (isinstance(r.value, float) and math.isnan(r.value)):
        return "n/a"
    if r.unit == "msg/s":
        return _si(r.value, "msg/s", " ")
    if r.unit == "B":
        return _si(r.value, "B")
    if r.unit == "x":
        per = r.extra.get("bytes_per_msg")
        return f"{r.value:.3g}x" + (f" ({per:g} B/msg)" if per is not None else "")
    if r.scenario == "reqrep":
        rate = r.extra.get("rate", 0.0)
        return f"{_duration(r.value)} p99 {_duration(r.extra.get('p99', float('nan')))} {_si(rate, 'req/s', ' ')}"
    return _duration(r.value)


def _cpu(r: Result | None) -> str:
    if r is None or "cpu_us_per_msg" not in r.extra:
        return "-"
    return f"{r.extra['cpu_us_per_msg']:.2f}"


def _ver(r: Result | None) -> str:
    if r is None:
        return "-"
    if r.error:
        return "ERROR"
    if r.verified is None:
        return "-"
    return "ok" if r.verified else "FAIL"


def fmt_size(size: int | None) -> str:
    return f"{size} B" if size is not None else ""


def _grid(rows: Iterable[Sequence[str]]) -> list[str]:
    rows = list(rows)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def _fmt_ratio(x: float) -> str:
    return f"{x:.3f}" if x < 1 else f"{x:.2f}"


def _ratio_spread(a: Result, b: Result) -> str:
    """With --repeat: the range of the per-run ratios (run i of each target was measured back to back),
    ``" [0.65-0.92]"``; empty for a single run."""
    ra, rb = a.extra.get("runs"), b.extra.get("runs")
    if not ra or not rb or len(ra) != len(rb) or len(ra) < 2 or not all(ra) or None in rb:
        return ""
    ratios = [y / x for x, y in zip(ra, rb, strict=True)]
    return f" [{_fmt_ratio(min(ratios))}-{_fmt_ratio(max(ratios))}]"


def render_table(results: Sequence[Result], targets: Sequence[str], checks: Sequence[GoalCheck]) -> list[str]:
    """The results table: one line per (row, size), one column per target; with two targets the ratio
    of the second (nats-edge) to the first (nats-server), medians, and with --repeat the range of the
    per-run ratios in brackets. CPU is broker µs per message."""
    keys: list[tuple[str, int | None]] = []
    for r in results:
        if r.key not in keys:
            keys.append(r.key)
    by = {(r.target, r.key): r for r in results}
    goal_by = {(c.row, c.size): c for c in checks}
    compare = len(targets) == 2
    header = ["scenario", "size", *targets]
    if compare:
        header.append("ratio")
    header += ["cpu µs/msg", "target", "verified"]
    lines: list[Sequence[str]] = [header]
    for key in keys:
        cells = [key[0], fmt_size(key[1])]
        rs = [by.get((t, key)) for t in targets]
        cells += [fmt_value(r) if r else "-" for r in rs]
        if compare:
            a, b = rs
            ratio = "-"
            if a and b and a.value and b.value is not None and not a.error and not b.error:
                ratio = _fmt_ratio(b.value / a.value) + _ratio_spread(a, b)
            cells.append(ratio)
        cells.append(" / ".join(_cpu(r) for r in rs))
        check = goal_by.get(key)
        if check is None:
            cells.append("")
        else:
            verdict = "met" if check.met else ("MISSED" if check.met is False else "n/a")
            cells.append(f"{check.label} {verdict}")
        cells.append("/".join(_ver(r) for r in rs))
        lines.append(cells)
    return _grid(lines)
