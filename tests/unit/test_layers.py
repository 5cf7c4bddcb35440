"""The package's layers point one way: every import (module-level, function-local and TYPE_CHECKING)
goes from a higher layer to a lower one or stays inside its own package.

    errors, edge (the version)  <-  protocol  <-  config  <-  core  <-  {security, leaf, store}
      <-  {adapters, monitoring, mqtt}  <-  runtime  <-  bench  <-  cli  <-  __main__

``config`` (schemas and their parsing, no behaviour) sits under ``core``, which takes Settings; a
feature whose schema needs its own code (the adapters' per-kind ``parse_config``) keeps that schema
in its own package and registers it with ``edge.config.sections`` by module name. Packages on one
layer do not import each other. ``firmware_bridge`` (the device side) never imports ``edge``.
zeroconf's test_circular_imports is the model; there is no exception list.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[2]

LAYERS: Final[dict[str, int]] = {
    "errors": 0, "edge": 0,
    "protocol": 1,
    "config": 2,
    "core": 3,
    "security": 4, "leaf": 4, "store": 4,
    "adapters": 5, "monitoring": 5, "mqtt": 5,
    "runtime": 6,
    "bench": 7,
    "cli": 8,
    "__main__": 9,
}


def _package(module: str) -> str | None:
    """The layer name of an ``edge`` module (``edge.core.client`` -> ``core``), None outside edge."""
    parts = module.split(".")
    if parts[0] != "edge":
        return None
    return "edge" if len(parts) == 1 else parts[1]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, with its line: relative imports resolved, nothing skipped."""
    module = _module_name(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
    return found


def _violations() -> list[str]:
    out: list[str] = []
    for path in sorted((ROOT / "edge").rglob("*.py")):
        src = _package(_module_name(path))
        assert src in LAYERS, f"{path}: package {src!r} has no layer; add it to LAYERS"
        for line, target in _imports(path):
            dst = _package(target)
            if dst is None or dst == src:
                continue
            assert dst in LAYERS, f"{path}:{line}: imports {target}, whose package has no layer"
            if LAYERS[dst] >= LAYERS[src]:
                out.append(f"{path.relative_to(ROOT)}:{line}: {src} (layer {LAYERS[src]}) imports {target} "
                           f"({dst}, layer {LAYERS[dst]})")
    for path in sorted((ROOT / "firmware_bridge").rglob("*.py")):
        out += [f"{path.relative_to(ROOT)}:{line}: firmware_bridge imports {target}"
                for line, target in _imports(path) if _package(target) is not None]
    return out


def test_imports_point_down_the_layers() -> None:
    violations = _violations()
    assert not violations, "imports against the layer direction:\n" + "\n".join(violations)


def test_the_walk_sees_function_local_and_type_checking_imports(tmp_path: Path) -> None:
    # The check is only as good as the walk: a lazy or TYPE_CHECKING import must count too.
    probe = ROOT / "edge" / "core" / "_layers_probe.py"
    probe.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from edge.runtime import broker\n"
                     "def f():\n    from ..leaf import link\n")
    try:
        found = [v for v in _violations() if "_layers_probe" in v]
    finally:
        probe.unlink()
    assert len(found) == 2, found
