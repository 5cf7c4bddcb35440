"""Hatch build hook: compile the listed modules with Cython when the build can, ship pure Python when not.

One source, two speeds (as zeroconf's and dbus-fast's build_ext.py do): the ``.py`` files listed in
``[tool.hatch.build.targets.wheel.hooks.custom] modules`` are the source of truth, compiled in Cython's
pure-Python mode with the ``.pxd`` declarations beside them. ``NATS_EDGE_BUILD`` chooses:

* ``auto`` (default): compile; if that fails (no C compiler, no Python headers, no Cython) print one
  line and build the pure-Python wheel;
* ``compiled``: compile, and fail the build if that is not possible;
* ``pure``: do not compile.

A regular wheel (``pip install .``) gets the extension modules from a temporary build directory; an
editable install (``pip install -e .``) imports the source tree itself, so the extensions are built in
place beside their ``.py`` files (git-ignored), and a pure editable build removes them again. Which
build runs is decided at runtime by what Python imports: ``edge.build_kind()``.
"""

from __future__ import annotations

import os
import shutil
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

ENV_VAR = "NATS_EDGE_BUILD"
MODES = ("auto", "compiled", "pure")

# Cython directives. annotation_typing=False: the .py annotations stay documentation (a ``bytes``
# annotation must not start rejecting a bytearray in the compiled build); C types come from the
# .pxd files only, so both builds accept exactly the same arguments.
DIRECTIVES = {
    "language_level": 3,
    "annotation_typing": False,
    "boundscheck": False,
    "wraparound": True,
    "cdivision": False,
}


class CythonBuildHook(BuildHookInterface):  # type: ignore[type-arg]  # generic over its config
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        mode = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
        if mode not in MODES:
            raise ValueError(f"{ENV_VAR}={mode!r}: expected one of {', '.join(MODES)}")
        root = Path(self.root)
        modules = [str(m) for m in self.config.get("modules", [])]
        editable = version == "editable"
        if editable:
            _remove_inplace(root, modules)  # never leave a stale extension shadowing its .py
        if mode == "pure" or not modules:
            self.app.display_info(f"nats-edge: pure-Python build ({ENV_VAR}={mode})")
            return
        try:
            built = self._compile(root, modules, inplace=editable)
        except Exception as exc:  # any failure means "no compiled build here"
            if mode == "compiled":
                raise RuntimeError(f"nats-edge: {ENV_VAR}=compiled but compiling failed: {exc}") from exc
            if editable:
                _remove_inplace(root, modules)
            shutil.rmtree(self._work, ignore_errors=True)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            self.app.display_warning(f"nats-edge: compiling the hot modules failed ({first}); pure-Python build")
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if not editable:
            for path, rel in built:
                build_data["force_include"][str(path)] = rel
        self.app.display_info(f"nats-edge: compiled build ({len(built)} modules)")

    def _compile(self, root: Path, modules: list[str], *, inplace: bool) -> list[tuple[Path, str]]:
        """Cythonize and compile ``modules`` (paths relative to ``root``); return (file, path in wheel)."""
        from Cython.Build import cythonize
        from setuptools import Distribution, Extension

        work = Path(tempfile.mkdtemp(prefix="nats-edge-build-"))
        self._work = work  # removed in finalize(), once the wheel holds the files (or the build failed)
        extensions = [
            Extension(
                m.removesuffix(".py").replace("/", "."),
                [m],
                extra_compile_args=["-O2", "-g0"],
                extra_link_args=["-s"],  # stripped: smaller files, less mapped (idle RSS counts on a 512 MB board)
            )
            for m in modules
        ]
        cwd = os.getcwd()
        os.chdir(root)  # cythonize and build_ext take the module paths relative to the project
        try:
            ext_modules = cythonize(
                extensions,
                compiler_directives=DIRECTIVES,
                build_dir=str(work / "c"),
                quiet=True,
                force=True,
            )
            dist = Distribution({"name": "nats-edge", "ext_modules": ext_modules})
            cmd: Any = dist.get_command_obj("build_ext")
            cmd.inplace = inplace
            cmd.build_lib = str(work / "lib")
            cmd.build_temp = str(work / "tmp")
            cmd.parallel = os.cpu_count() or 1
            cmd.ensure_finalized()
            cmd.run()
        finally:
            os.chdir(cwd)
        suffix = sysconfig.get_config_var("EXT_SUFFIX")
        built: list[tuple[Path, str]] = []
        for m in modules:
            rel = m.removesuffix(".py") + suffix
            path = (root if inplace else work / "lib") / rel
            if not path.is_file():
                raise RuntimeError(f"{rel} was not built")
            built.append((path, rel))
        return built

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        work = getattr(self, "_work", None)
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


def _remove_inplace(root: Path, modules: list[str]) -> None:
    """Delete extension modules built in place for ``modules`` by an earlier editable install."""
    for m in modules:
        stem = root / m.removesuffix(".py")
        for path in stem.parent.glob(stem.name + ".*"):
            if path.suffix in (".so", ".pyd") and path.name.startswith(stem.name + "."):
                path.unlink()
