"""ruff is part of the suite, so the README's one test command also keeps the code clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_check_is_clean():
    folders = [
        name for name in ("pipeline", "tests", "bench", "examples") if (ROOT / name).is_dir()
    ]
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", *folders],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
