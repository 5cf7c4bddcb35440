"""Bounded coverage-guided fuzz runs (atheris) of the byte-facing decoders, in the slow tier.

Targets (tests/fuzz/_atheris_targets.py): the client and leaf sides of the NATS parser, the firmware
bridge's frame decoder and COBS codec, and the outbox record scanner. Each runs in a child process (atheris
takes over the interpreter's tracing) for a fixed number of runs and at most ``MAX_TIME`` seconds, from a
seed corpus built with the project's encoders. Skipped when atheris is not installed (it has wheels for
Linux x86-64 only; see the ``test`` extra).

libFuzzer picks a random seed each run; a failure message carries it (``-seed=``), the offending input and
the Python traceback. ``EDGE_FUZZ_SEED`` fixes the seed, to replay a run. What the fuzzer found is pinned
by a plain test below (the leaf parser's short LMSG/HMSG argument lists).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fuzz._atheris_targets import TARGETS, seeds

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
RUNS = 20000  # per target
MAX_TIME = 25  # seconds per target, a bound for a loaded machine; the run count is normally reached first
# Longest input, bytes: a few KiB passes every limit in _atheris_targets. The frame decoder's limit is 67 encoded
# bytes, so 512 bytes hold several frames; longer inputs (one decode per 0x00) made it the slowest target by far.
MAX_LEN = {"frames": 512}


def _run_stats(out: str) -> tuple[int | None, str | None]:
    runs = re.findall(r"stat::number_of_executed_units: (\d+)", out) or re.findall(r"Done (\d+) runs", out)
    seed = re.search(r"Seed: (\d+)", out)
    return (int(runs[-1]) if runs else None), (seed.group(1) if seed else None)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_atheris(target: str, tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(seeds(target)):
        (corpus / f"seed{i}").write_bytes(seed)
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    # -len_control=0: inputs up to MAX_LEN from the start, so short runs reach the decoders' size limits.
    flags = [f"-runs={RUNS}", f"-max_total_time={MAX_TIME}", f"-max_len={MAX_LEN.get(target, 4096)}", "-len_control=0",
             "-timeout=10", "-print_final_stats=1", f"-artifact_prefix={artifacts}/"]
    if os.environ.get("EDGE_FUZZ_SEED"):
        flags.append(f"-seed={os.environ['EDGE_FUZZ_SEED']}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "tests.fuzz._atheris_targets", target, *flags, str(corpus)],
                       cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       errors="replace", timeout=MAX_TIME + 60)
    out = r.stdout  # libFuzzer logs to stderr, atheris prints the Python traceback to stdout
    elapsed = time.monotonic() - t0
    runs, seed = _run_stats(out)
    summary = f"atheris {target}: {runs} runs (limit {RUNS}) in {elapsed:.1f} s, seed {seed}"
    summary += f", exit {r.returncode}"
    print(f"\n{summary}")
    if r.returncode != 0:
        found = "\n".join(f"{p}: {p.read_bytes()[:2000]!r}" for p in sorted(artifacts.iterdir()))
        # The Python traceback, if any; libFuzzer's own errors (timeout, out-of-memory) are at the end.
        crash = re.search(r"=== Uncaught Python exception: ===.*?(?=^==\d+== ERROR)", out, re.S | re.M)
        detail = crash.group(0) if crash else out[-4000:]
        pytest.fail(f"{summary}\ninput(s):\n{found}\n{detail}", pytrace=False)
    assert runs, f"{summary}: no run count in the fuzzer output\n{out[-2000:]}"


@pytest.mark.parametrize("line", [b"LMSG a\r\n", b"HMSG a\r\n", b"LMSG \r\n", b"HMSG a 5\r\n"])
def test_leaf_short_message_args(line: bytes) -> None:
    """Found by the leaf target: these escaped as IndexError (a traceback and a dropped link) instead of
    the ProtocolError that gets the hub an -ERR."""
    from edge.protocol.errors import ProtocolError
    from edge.protocol.parser import Parser
    from tests.fuzz._atheris_targets import MAX_PAYLOAD, _Sink

    with pytest.raises(ProtocolError):
        Parser(_Sink(MAX_PAYLOAD), kind="leaf").feed(line)
