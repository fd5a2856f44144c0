"""``bench/uploads.py`` runs: its smoke mode (4 MB through Serve, every route) exits 0 and reports each route."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(600)
def test_upload_benchmark_smoke(services):
    run = subprocess.run([sys.executable, "-m", "bench.uploads", "--smoke"], cwd=ROOT, env=dict(os.environ),
                         capture_output=True, text=True, timeout=540)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for route in ("| disk (baseline) | 4 |", "| multipart | 4 |", "| tus | 4 |", "| tus-1MiB | 4 |"):
        assert route in run.stdout, run.stdout[-3000:]
