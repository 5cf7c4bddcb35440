"""A bounded coverage-guided fuzz run (atheris) of the client parser, in the slow tier.

atheris runs in a child process (it takes over the interpreter's tracing) for a fixed number of runs;
the only exception allowed out of the parser is ProtocolError. Skipped when atheris is not installed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

RUNS = 20000

HARNESS = textwrap.dedent('''
    import sys
    import atheris
    with atheris.instrument_imports():
        from edge.protocol.parser import Parser
        from edge.protocol.errors import ProtocolError

    class Sink:
        def __getattr__(self, name):
            return lambda *a, **k: None

    def one(data):
        fdp = atheris.FuzzedDataProvider(data)
        p = Parser(Sink(), kind="client", max_control_line=256, max_payload=1024)
        try:
            while fdp.remaining_bytes():
                p.feed(fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 64)))
        except ProtocolError:
            pass
        assert p.buffered <= 256 + 1024 + 2 + 64

    atheris.Setup(sys.argv, one)
    atheris.Fuzz()
''')


def test_atheris_client_parser(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("atheris")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, seed in enumerate([b"PUB a 3\r\nabc\r\n", b"SUB a.* q 1\r\n", b"HPUB a 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
                              b'CONNECT {"verbose":false}\r\nPING\r\n']):
        (corpus / f"seed{i}").write_bytes(seed)
    script = tmp_path / "harness.py"
    script.write_text(HARNESS)
    r = subprocess.run([sys.executable, str(script), f"-runs={RUNS}", "-max_total_time=60", str(corpus)],
                       capture_output=True, text=True, timeout=100)
    tail = "\n".join(r.stderr.splitlines()[-5:])
    print(f"\natheris: exit {r.returncode}, runs={RUNS}\n{tail}")
    assert r.returncode == 0, r.stderr[-3000:]
