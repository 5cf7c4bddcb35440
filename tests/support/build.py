"""Which build the tests run (issue 17), and a guard against extension modules older than their source."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import edge

ROOT = Path(__file__).resolve().parents[2]


def stale_extensions() -> list[str]:
    """Sources (.py/.pxd) changed after the extension built in place from them by an editable install:
    Python would import the old compiled code. Empty for a pure build or an installed wheel."""
    stale: list[str] = []
    for name in edge.COMPILED_MODULES:
        spec = find_spec(name)
        if spec is None or not spec.origin or spec.origin.endswith(".py"):
            continue
        origin = Path(spec.origin)
        source = ROOT / (name.replace(".", "/") + ".py")
        if origin.parent != source.parent:
            continue  # an installed wheel, not this tree
        built = origin.stat().st_mtime
        stale += [str(p.relative_to(ROOT)) for p in (source, source.with_suffix(".pxd"))
                  if p.is_file() and p.stat().st_mtime > built]
    return stale
