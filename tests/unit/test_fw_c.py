"""The C library (firmware_bridge/c), compiled with gcc and driven through its host harness.

Every check compares bytes with the Python codecs: what C writes must be what Python encodes, and
what Python encodes C must decode.
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest

from firmware_bridge.crc16 import crc16_ccitt_false
from firmware_bridge.frames import FrameDecoder, encode_frame
from firmware_bridge.nats import encode_connect, encode_pub, encode_sub, encode_unsub
from tests.support.cbuild import C_DIR, FLAGS, GCC, NO_GCC, build_with_library

pytestmark = pytest.mark.skipif(GCC is None, reason=NO_GCC)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_with_library("host_test.c", tmp_path_factory.mktemp("c") / "host_test")


def test_library_alone_compiles_warning_free(tmp_path: Path) -> None:
    assert GCC is not None
    result = subprocess.run(
        [GCC, *FLAGS, "-Wconversion", "-Wshadow", "-c", str(C_DIR / "nats_serial.c"), "-o", str(tmp_path / "ns.o")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def script(harness: Path, mode: str, lines: list[str], *caps: int) -> list[str]:
    result = subprocess.run(
        [str(harness), mode, *map(str, caps)],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def tx(out: list[str]) -> bytes:
    return b"".join(bytes.fromhex(line[3:]) for line in out if line.startswith("TX "))


def wire(mode: str, ops: list[bytes]) -> bytes:
    return b"".join(encode_frame(o) if mode == "frames" else o for o in ops)


def test_crc_and_frame_encoding_match_python(harness: Path) -> None:
    rng = random.Random(1)
    payloads = [b"", b"123456789", b"\x00", b"\x00" * 3, bytes(range(1, 255)), bytes(range(256)) * 2]
    payloads += [rng.randbytes(rng.randrange(0, 700)) for _ in range(150)]
    lines = [f"frame {p.hex() or '-'}" for p in payloads] + [f"crc {p.hex() or '-'}" for p in payloads]
    out = script(harness, "plain", lines)
    encs = [bytes.fromhex(line[4:]) if line != "ENC -" else b"" for line in out if line.startswith("ENC ")]
    crcs = [int(line[4:], 16) for line in out if line.startswith("CRC ")]
    assert encs == [encode_frame(p) for p in payloads]
    assert crcs == [crc16_ccitt_false(p) for p in payloads]
    assert crcs[1] == 0x29B1
    assert FrameDecoder(max_payload=1024).feed(b"".join(encs)) == payloads


@pytest.mark.parametrize("mode", ["plain", "frames"])
def test_outgoing_ops_match_python_encoders(harness: Path, mode: str) -> None:
    body = bytes(range(256)) + b"\r\n\x00"
    out = script(
        harness,
        mode,
        [
            "connect node7",
            "pub sensors.node7.t - 32312e35",
            f"pub svc r.1 {body.hex()}",
            "pub empty - -",
            "sub cmd.> - print",
            "sub work q print",
            "unsub 2 5",
            "unsub 1 0",
            'connect a"b',
        ],
    )
    expected = [
        encode_connect("node7", lang="c"),
        encode_pub("sensors.node7.t", b"21.5"),
        encode_pub("svc", body, reply="r.1"),
        encode_pub("empty", b""),
        encode_sub("cmd.>", 1),
        encode_sub("work", 2, queue="q"),
        encode_unsub(2, 5),
        encode_unsub(1),
    ]
    assert tx(out) == wire(mode, expected)
    assert out.count("RC -1") == 1  # a name that would need JSON escaping is refused, nothing written


INCOMING = [
    b'INFO {"server_id":"x","headers":true} \r\n',
    b"PING\r\n",
    b"MSG cmd.led 1 _INBOX.gw.7 2\r\non\r\n",
    b"+OK\r\n",
    b"hmsg\tcmd.led 1  12 15\r\nNATS/1.0\r\n\r\noff\r\n",
    b"MSG cmd.bin 1 4\r\n\x00\r\n\x01\r\n",
    b"MSG nobody 9 1\r\nx\r\n",
    b"-ERR 'Stale Connection'\r\n",
]


@pytest.mark.parametrize("mode", ["plain", "frames"])
@pytest.mark.parametrize("chunk", [0, 1, 3])
def test_incoming_msgs_callbacks_ping_and_respond(harness: Path, mode: str, chunk: int) -> None:
    out = script(harness, mode, ["sub cmd.> - echo", f"feed {wire(mode, INCOMING).hex()} {chunk}", "stats"])
    assert [line for line in out if line.startswith("MSG ")] == [
        f"MSG cmd.led 1 _INBOX.gw.7 {b'on'.hex()}",
        f"MSG cmd.led 1 - {b'off'.hex()}",
        "MSG cmd.bin 1 - 000d0a01",
    ]
    replies = tx(out)[len(wire(mode, [encode_sub("cmd.>", 1)])) :]
    assert replies == wire(mode, [b"PONG\r\n", encode_pub("_INBOX.gw.7", b"ack:on")])
    frames = f"frames_ok={len(INCOMING) if mode == 'frames' else 0} frames_bad=0"
    assert out[-1] == f"STATS msgs_in=3 msgs_out=1 pings=1 {frames} lines_bad=0 overflows=0 bytes_dropped=0 errors=1"


@pytest.mark.parametrize("mode", ["plain", "frames"])
def test_request_reply_and_timeout(harness: Path, mode: str) -> None:
    reply1 = wire(mode, [b"MSG _INBOX.host.1 1 5\r\n12:00\r\n"])
    late = wire(mode, [b"MSG _INBOX.host.2 1 4\r\nlate\r\n"])
    out = script(
        harness,
        mode,
        [
            "req svc.time 6e6f77 100 4294967290",  # deadline wraps past 2^32: still 100 ms later
            f"feed {reply1.hex()} 1",
            "req svc.time 6e6f77 100 4294967290",
            "tick 4294967295",
            "tick 93",
            "tick 94",
            f"feed {late.hex()}",
        ],
    )
    assert [line for line in out if line in ("REPLY " + b"12:00".hex(), "TIMEOUT")] == [
        "REPLY " + b"12:00".hex(),
        "TIMEOUT",
    ]
    assert out.index("TIMEOUT") > out.index("REPLY " + b"12:00".hex())
    assert tx(out) == wire(
        mode,
        [
            encode_sub("_INBOX.host.*", 1),
            encode_pub("svc.time", b"now", "_INBOX.host.1"),
            encode_pub("svc.time", b"now", "_INBOX.host.2"),
        ],
    )
    # TIMEOUT fires at tick 94 (4294967290 + 100 wraps to 94), not at 4294967295 or 93.
    assert out[out.index("TIMEOUT") - 1 :].count("TIMEOUT") == 1


def test_request_slots_are_bounded(harness: Path) -> None:
    out = script(harness, "plain", [f"req s{i} - 10 0" for i in range(5)])
    assert [line for line in out if line.startswith("RC")] == ["RC 0"] * 4 + ["RC -2"]
    out = script(harness, "plain", [f"sub s{i} - print" for i in range(3)], 512, 600, 2)
    assert [line for line in out if line.startswith("SID")] == ["SID 1", "SID 2", "SID -2"]


def test_limits_are_counted(harness: Path) -> None:
    data = b"X" * 200 + b"\r\nMSG a 1 100\r\n" + b"y" * 100 + b"\r\nBOGUS\r\nMSG a 1 zz\r\nMSG a 1 2\r\nok\r\n"
    out = script(harness, "plain", ["sub a - print", f"feed {data.hex()} 7", "stats"], 64)
    assert [line for line in out if line.startswith("MSG")] == [f"MSG a 1 - {b'ok'.hex()}"]
    assert "lines_bad=2 overflows=2" in out[-1]
    bad = bytearray(encode_frame(b"MSG a 1 1\r\nx\r\n"))
    bad[2] ^= 0xFF
    stream = b"\x00\x05ab\x00" + bytes(bad) + encode_frame(b"Z" * 300) + encode_frame(b"MSG a 1 2\r\nok\r\n")
    out = script(harness, "frames", ["sub a - print", f"feed {stream.hex()}", "stats"], 512, 100)
    assert [line for line in out if line.startswith("MSG")] == [f"MSG a 1 - {b'ok'.hex()}"]
    assert "frames_ok=1 frames_bad=3" in out[-1] and "overflows=1" in out[-1]


@pytest.mark.parametrize("mode", ["plain", "frames"])
def test_garbage_is_survived(harness: Path, mode: str) -> None:
    rng = random.Random(5)
    noise = [rng.randbytes(rng.randrange(1, 3000)) for _ in range(30)]
    noise += [bytes(rng.choice(b"MSG HMSG 0123456789\r\n\x00\t") for _ in range(2000)) for _ in range(30)]
    tail = wire(mode, [b"\r\nMSG a 1 2\r\nok\r\n"])
    lines = ["sub a - print"] + [f"feed {n.hex()} {rng.choice([0, 1, 13])}" for n in noise]
    out = script(harness, mode, [*lines, "feed 00", f"feed {tail.hex()}"], 128, 160)
    assert out[-1] == f"MSG a 1 - {b'ok'.hex()}" or out[-2] == f"MSG a 1 - {b'ok'.hex()}"


@pytest.mark.parametrize("mode", ["plain", "frames"])
def test_command_envelope_replies_match_the_gateway_contract(harness: Path, mode: str) -> None:
    """A device answering commands with nats_serial_reply_ok/_error writes exactly the envelope
    edge.adapters.commands defines (byte for byte against json.dumps of it)."""
    subject = "cmd.gw1.serial.node7"
    msgs = [
        encode_pub(f"{subject}.relay", b'{"on":true}', reply="_INBOX.a.1"),
        encode_pub(f"{subject}.relay", b'{"on":"x"}', reply="_INBOX.a.2"),
        encode_pub(f"{subject}.dance", b"{}", reply="_INBOX.a.3"),
        encode_pub(f"{subject}.relay", b'{"on":false}'),  # no reply subject: nothing can be answered
    ]
    incoming = b"".join(m.replace(b"PUB ", b"MSG ", 1).replace(b".relay ", b".relay 1 ", 1)
                        .replace(b".dance ", b".dance 1 ", 1) for m in msgs)
    out = script(harness, mode, [f"sub {subject}.* - command", f"feed {wire(mode, [incoming]).hex()}"])
    assert [line for line in out if line.startswith(("ACTION", "RC"))] == [
        "ACTION relay", "RC 0", "ACTION relay", "RC 0", "ACTION dance", "RC 0", "ACTION relay", "RC -1"]

    def env(reply: str, doc: dict[str, object]) -> bytes:
        return encode_pub(reply, json.dumps(doc, separators=(",", ":")).encode())

    assert tx(out) == wire(mode, [
        encode_sub(f"{subject}.*", 1),
        env("_INBOX.a.1", {"ok": True, "result": {"relay": True}}),
        env("_INBOX.a.2", {"ok": False, "error": "'on' must be true or false", "code": "bad_arguments"}),
        env("_INBOX.a.3", {"ok": False, "error": "unknown action", "code": "unsupported"}),
    ])
