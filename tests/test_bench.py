"""Benchmarks stay runnable: none shadows a project package, and each one's smoke mode runs here.

A benchmark that only runs when someone remembers to run it breaks unseen (``bench/audio.py`` once
shadowed the ``audio`` package and ``make bench-realtime`` failed before measuring anything). Each
``make bench-*`` target runs a module of ``bench/`` with ``python -m``; each such module has a
``--smoke`` mode (tiny sizes, seconds) that starts what it starts, measures, prints its report and
exits 0 only when everything was measured. The smoke runs are subprocesses with a clean environment:
the tests' own realtime limits (tiny queues, fast rate limits) must not leak into them.
The smoke runs start with the test session and run beside it (``tests/bench_smoke.py`` says why);
the tests here wait for them and check their output.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.bench_smoke import SMOKE_ORDER, SMOKE_REPORTS, SMOKE_TIMEOUT_S

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


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


def test_every_smoke_run_has_an_order():
    assert set(SMOKE_ORDER) == set(SMOKE_REPORTS), "add the module to SMOKE_ORDER, by how long its smoke run takes"


@pytest.mark.timeout(2 * SMOKE_TIMEOUT_S)  # it may wait for a slot behind another run
@pytest.mark.parametrize("module", sorted(SMOKE_REPORTS))
def test_benchmark_smoke_run(module: str, smoke_runs):
    run = smoke_runs[module].result()
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"bench.{module} --smoke exited {run.returncode}:\n{output[-6000:]}"
    missing = [line for line in SMOKE_REPORTS[module] if line not in output]
    assert not missing, f"bench.{module} --smoke printed no {missing}:\n{output[-4000:]}"
