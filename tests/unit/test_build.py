"""The compiled and pure builds (issue 17): one list of compiled modules, an honest report of which build
runs, and no extension module older than the source it was compiled from.

CI runs the suite once on the default install (compiled where gcc and the Python headers are present)
and once more after ``NATS_EDGE_BUILD=pure pip install -e .`` with ``NATS_EDGE_EXPECT_BUILD=pure``, so
a build that silently came out the other way fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from importlib.machinery import EXTENSION_SUFFIXES
from importlib.util import find_spec

import edge
from tests.support.build import ROOT, stale_extensions


def _origin(name: str) -> str:
    spec = find_spec(name)
    assert spec is not None and spec.origin, name
    return spec.origin


def test_compiled_modules_are_the_build_hooks_list() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    hook = config["tool"]["hatch"]["build"]["targets"]["wheel"]["hooks"]["custom"]
    assert [m.removesuffix(".py").replace("/", ".") for m in hook["modules"]] == list(edge.COMPILED_MODULES)
    for path in hook["modules"]:
        assert (ROOT / path).is_file(), path  # the .py stays the source of truth
        assert (ROOT / path).with_suffix(".pxd").is_file(), f"{path}: declarations live beside it"


def test_build_kind_reports_what_is_imported() -> None:
    compiled = [any(_origin(n).endswith(s) for s in EXTENSION_SUFFIXES) for n in edge.COMPILED_MODULES]
    expected = "compiled" if all(compiled) else "pure" if not any(compiled) else "mixed"
    assert edge.build_kind() == expected
    assert expected != "mixed", f"a partial build: {dict(zip(edge.COMPILED_MODULES, compiled, strict=True))}"
    want = os.environ.get("NATS_EDGE_EXPECT_BUILD")
    if want:
        assert expected == want


def test_no_extension_is_older_than_its_source() -> None:
    """Also checked before any test runs (tests/conftest.py), so a partial run cannot test stale code."""
    stale = stale_extensions()
    assert not stale, f"changed after their extension was built, reinstall: {stale}"


def test_returning_the_freed_heap_needs_ctypes_only_in_the_pure_build() -> None:
    """The compiled build calls glibc's malloc_trim itself (heap.pxd); ctypes would cost ~0.3 MB resident."""
    code = (
        "import sys; from edge.runtime.heap import return_freed_heap; return_freed_heap(); "
        "print('ctypes' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.strip() == str(edge.build_kind() == "pure")
