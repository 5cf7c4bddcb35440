"""One error tree: every exception the project defines for others to catch derives from EdgeError."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "edge"


def test_every_public_exception_is_an_edge_error() -> None:
    import importlib

    from edge.errors import EdgeError

    outside: list[str] = []
    for path in sorted(ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        names = [n.name for n in tree.body if isinstance(n, ast.ClassDef) and not n.name.startswith("_")]
        if not names:
            continue
        module = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__")
        mod = importlib.import_module(module)
        for name in names:
            cls = getattr(mod, name, None)
            if isinstance(cls, type) and issubclass(cls, BaseException) and not issubclass(cls, EdgeError):
                outside.append(f"{module}.{name}")
    assert not outside, outside
