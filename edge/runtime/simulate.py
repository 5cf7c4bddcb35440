"""``nats-edge simulate-device``: a simulated serial sensor on a pty (or stdout) for trying the serial adapter.

    nats-edge simulate-device --codec jsonl            # prints "pty: /dev/pts/7", then streams readings
    nats-edge simulate-device --codec nmea --link /tmp/gps0   # also a stable symlink to the pty
    nats-edge simulate-device --codec lines --stdout --count 3

On start it prints ``pty: <path>`` and then a ready-to-paste TOML ``[[adapters.serial]]`` table that
reads it (port = the ``--link`` if given, else the pty; device, codec and ``codec_options``), ended by an
empty line. The device answers PINGs (nats/frames), so the broker keeps its connection. Runs until
SIGINT/SIGTERM or ``--count`` samples.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

__all__ = ["add_simulate_parser", "run_simulator"]


def add_simulate_parser(sub: Any) -> Callable[[argparse.Namespace], int]:
    p = sub.add_parser("simulate-device", help="a simulated serial sensor on a pty (prints its path)")
    p.add_argument("--codec", default="jsonl", choices=["nats", "frames", "jsonl", "nmea", "lines"])
    p.add_argument("--device", default="sim1", help="device id (jsonl id field, CONNECT name)")
    p.add_argument("--subject-prefix", default=None, help="nats/frames: subject prefix (default sensors.<device>)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between samples (default 1)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--count", type=int, default=0, help="stop after N samples (0 = run until interrupted)")
    p.add_argument("--link", default=None, help="also create this symlink to the pty (replaced if present)")
    p.add_argument("--stdout", action="store_true", help="write to stdout instead of a pty")
    return run_simulator


def run_simulator(args: argparse.Namespace) -> int:
    import os
    import select
    import signal
    import sys
    import time
    import tty

    from firmware_bridge.simulator import Simulator

    sim = Simulator(args.codec, device=args.device, seed=args.seed, subject_prefix=args.subject_prefix)
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.stdout:
        out_fd, in_fd, slave = sys.stdout.fileno(), None, None
    else:
        master, slave = os.openpty()
        tty.setraw(slave)
        path = os.ttyname(slave)
        if args.link:
            tmp = f"{args.link}.tmp{os.getpid()}"
            os.symlink(path, tmp)
            os.replace(tmp, args.link)
        out_fd, in_fd = master, master
        print(f"pty: {path}" + (f" (link {args.link})" if args.link else ""), flush=True)
        print("# paste into the broker's config file (TOML):", flush=True)
        print(sim.config_block(os.path.abspath(args.link) if args.link else path), flush=True)
    sent = 0
    next_at = time.monotonic()
    try:
        while not stop and (args.count <= 0 or sent < args.count):
            timeout = max(0.0, next_at - time.monotonic())
            readable = select.select([in_fd], [], [], timeout)[0] if in_fd is not None else []
            if in_fd is not None and readable:
                try:
                    data = os.read(in_fd, 4096)
                except OSError:
                    data = b""
                reply = sim.receive(data) if data else b""
                if reply:
                    os.write(out_fd, reply)
                continue
            if in_fd is None and timeout > 0:
                time.sleep(timeout)
            chunk = sim.next_chunk(time.time())
            try:
                os.write(out_fd, chunk)
            except BlockingIOError:
                pass  # nobody reads the pty yet and its buffer is full: drop this sample
            sent += 1
            next_at += args.interval
    finally:
        if slave is not None:
            os.close(slave)
            os.close(out_fd)
        if args.link and os.path.islink(args.link):
            os.unlink(args.link)
    return 0
