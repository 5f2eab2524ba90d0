"""`edge run` fixes glibc's mmap threshold and arena count, unless the operator set MALLOC_*."""

from __future__ import annotations

import subprocess
import sys

CHECK = "from edge.malloc_tuning import tune_malloc; print(tune_malloc())"


def _run(env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True)
    return out.stdout.strip()


def test_glibc_takes_the_settings():
    assert _run({"PATH": "/usr/bin:/bin"}) == "True"


def test_an_operators_malloc_environment_wins():
    assert _run({"PATH": "/usr/bin:/bin", "MALLOC_ARENA_MAX": "4"}) == "False"
