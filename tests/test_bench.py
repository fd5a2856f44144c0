"""Benchmarks stay runnable: none shadows a project package, and each one's smoke mode runs here.

A benchmark that only runs when someone remembers to run it breaks unseen (``bench/audio.py`` once
shadowed the ``audio`` package and ``make bench-realtime`` failed before measuring anything). Each
``make bench-*`` target runs a module of ``bench/`` with ``python -m``; each such module has a
``--smoke`` mode (tiny sizes, seconds) that starts what it starts, measures, prints its report and
exits 0 only when everything was measured. The smoke runs are subprocesses with a clean environment:
the tests' own realtime limits (tiny queues, fast rate limits) must not leak into them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"

#: module -> lines its smoke report must contain (beyond exiting 0).
SMOKE_REPORTS: dict[str, list[str]] = {
    "api": ["open loop at", "closed loop", "target (p95"],
    "realtime": ["room100:", "room1000:", "hold:", "peak: room1000", "smoke run: every target measured every scenario"],
    "audio_bench": ["== Pipeline on one", "== Identification:", "== Tempo and key"],
    "recs": ["| popularity |", "| ALS (implicit defaults) |", "| EASE (lambda 500) |", "| VerseFlow (served) |",
             "target (VerseFlow >= best of ALS and EASE on both)", "== cold start:", "| VerseFlow content |",
             "== serving:", "| 2 shards (", "target (p99 < 50 ms"],
    "billing_bench": ["webhook events handled:", "webhook baseline, every object re-read", "webhook ratio,",
                      "webhook CPU per event", "webhook duplicates:", "ledger: balanced",
                      "PostgreSQL round trips per event acted on",
                      "royalty run over 10,000 plays (pro_rata)", "royalty run over 20,000 plays (artist_centric)",
                      "plays ingestion, 20,000 plays", "reading the month's streams, 20,000 plays"],
    "uploads": ["| disk (baseline) | 4 |", "| multipart | 4 |", "| tus | 4 |", "| tus-1MiB | 4 |"],
    "fingerprint": ["== Fingerprint catalogue:", "-- accuracy:", "-- targets at 16 tracks --",
                    "smoke run: every size measured"],
}


def _project_top_level_names() -> set[str]:
    """Every name ``import x`` could mean in this project: its packages and root modules."""
    names = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    names |= {p.stem for p in ROOT.glob("*.py")}
    return names - {"bench"}


def _make_bench_modules() -> dict[str, str]:
    """``make bench-*`` target -> the ``bench`` module its recipe runs."""
    makefile = (ROOT / "Makefile").read_text()
    modules = {}
    for target, recipe in re.findall(r"^(bench-[\w-]+):.*\n((?:\t.*\n)+)", makefile, flags=re.M):
        found = re.search(r"-m bench\.(\w+)", recipe)
        assert found, f"make {target} must run its benchmark as a module (python -m bench.x):\n{recipe}"
        modules[target] = found.group(1)
    return modules


def test_no_bench_module_shadows_a_project_package():
    shadowing = sorted(p.name for p in BENCH.glob("*.py") if p.stem in _project_top_level_names())
    assert not shadowing, f"bench/ modules named like project packages or modules: {shadowing}"


def test_every_make_bench_target_has_a_smoke_run():
    modules = _make_bench_modules()
    assert modules, "no bench-* targets found in the Makefile"
    missing = {target: module for target, module in modules.items() if module not in SMOKE_REPORTS}
    assert not missing, f"benchmarks without a smoke run in tests/test_bench.py: {missing}"
    for module in modules.values():
        assert (BENCH / f"{module}.py").exists()


def _clean_env(services: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VERSEFLOW_", "RAY_"))}
    env["VERSEFLOW_DATABASE_URL"] = services["VERSEFLOW_DATABASE_URL"]  # the benchmark makes its own database there
    env["VERSEFLOW_REDIS_URL"] = services["VERSEFLOW_REDIS_URL"]  # under its own key prefix
    return env


@pytest.mark.timeout(900)
@pytest.mark.parametrize("module", sorted(SMOKE_REPORTS))
def test_benchmark_smoke_run(module: str, services):
    run = subprocess.run([sys.executable, "-m", f"bench.{module}", "--smoke"], cwd=ROOT, env=_clean_env(services),
                         capture_output=True, text=True, timeout=840)
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"bench.{module} --smoke exited {run.returncode}:\n{output[-6000:]}"
    missing = [line for line in SMOKE_REPORTS[module] if line not in output]
    assert not missing, f"bench.{module} --smoke printed no {missing}:\n{output[-4000:]}"
