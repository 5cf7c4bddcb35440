"""Building the firmware C library (firmware_bridge/c) and a host program with gcc, for the tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Final

C_DIR: Final = Path(__file__).resolve().parents[2] / "firmware_bridge" / "c"
GCC: Final = shutil.which("gcc")
NO_GCC: Final = "gcc is not installed; the C library cannot be built"
FLAGS: Final = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O1", "-g"]


def build_with_library(program: str, out: Path) -> Path:
    """Compile ``C_DIR/tests/<program>`` with the library into ``out``, warning-free. Sanitizers catch
    out-of-bounds access on garbage input; a toolchain without them gets a plain build."""
    assert GCC is not None, NO_GCC
    sources = [str(C_DIR / "tests" / program), str(C_DIR / "nats_serial.c")]
    sanitized = subprocess.run(
        [GCC, *FLAGS, "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-o", str(out), *sources],
        capture_output=True, text=True, check=False,
    )
    if sanitized.returncode != 0:
        plain = subprocess.run([GCC, *FLAGS, "-o", str(out), *sources], capture_output=True, text=True, check=False)
        assert plain.returncode == 0, plain.stderr
    return out
