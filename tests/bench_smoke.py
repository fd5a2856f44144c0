"""The benchmarks' smoke runs (``tests/test_bench.py`` checks them), started as the test session starts.

Each smoke run is a subprocess with a clean environment (the tests' own realtime limits, tiny queues and
fast rate limits, must not leak into them) that makes its own database, Redis key prefix, ports and
local Ray: it shares nothing with the suite or with another smoke run. Each waits mostly on its own Ray
start, its servers and its timers, and the machine was half idle while they ran one after another at
the end of the suite, so they run beside the suite instead, one at a time (``SMOKE_PARALLEL``), the
longest first, and their tests go last, when the runs are done or nearly. They check that every part
was measured, never how fast, so running beside other work changes their figures, not their verdict;
and the suite's tests assert behaviour, never time.

They start only when the session has selected a smoke test: a run of other tests starts none.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SMOKE_TEST = "test_benchmark_smoke_run"

#: smoke runs under way at once (``VERSEFLOW_TEST_SMOKE_PARALLEL``): one beside the suite fills what the
#: suite leaves idle of two cores without making either wait for the CPU
SMOKE_PARALLEL = int(os.environ.get("VERSEFLOW_TEST_SMOKE_PARALLEL", "1"))
SMOKE_TIMEOUT_S = 840
#: the longest smoke runs start first, so the short ones fill the slots beside them
SMOKE_ORDER = ("realtime", "recs", "autoscale", "nodeloss", "fingerprint", "api", "audio_bench", "billing_bench",
               "uploads")

#: module -> lines its smoke report must contain (beyond exiting 0).
SMOKE_REPORTS: dict[str, list[str]] = {
    "api": ["open loop at", "closed loop", "target (p95"],
    "realtime": ["room100:", "room1000:", "hold:", "peak: room1000", "smoke run: every target measured every scenario"],
    "audio_bench": ["== Pipeline on one", "== Identification:", "== Tempo and key", "== Timbre: a fresh",
                    "== Timbre: per analysed"],
    "recs": ["| popularity |", "| ALS (implicit defaults) |", "| EASE (lambda 500) |", "| VerseFlow (served) |",
             "target (VerseFlow >= best of ALS and EASE on both)", "== cold start:",
             "== cold start, one-style tastes:", "== cold start, cross-genre tastes:", "| content network (served) |",
             "| content ridge (linear baseline) |", "| content network on genre probabilities only |",
             "target on cross-genre tastes (content network",
             "== serving:", "| 2 shards (", "target (p99 < 50 ms", "== serving through Serve:",
             "| Serve, 2 shards (", "target through Serve (p99 < 50 ms"],
    "billing_bench": ["webhook events handled:", "webhook baseline, every object re-read", "webhook ratio,",
                      "webhook CPU per event", "webhook duplicates:", "ledger: balanced",
                      "PostgreSQL round trips per event acted on",
                      "royalty run over 10,000 plays (pro_rata)", "royalty run over 20,000 plays (artist_centric)",
                      "royalty run over 20,000 plays (user_centric)", "plays ingestion, 10,000 plays",
                      "writing the month's counts directly", "royalty baseline over 20,000 plays",
                      "royalty run growth 10,000 → 20,000 plays"],
    "uploads": ["| disk (baseline) | 4 |", "| multipart | 4 |", "| tus | 4 |", "| tus-1MiB | 4 |"],
    "autoscale": ["== autoscaling settings used", "api: replicas", "gateway: replicas", "== timeline",
                  "API p50/p99 ms", "== per deployment", "ws chat:", "upload:", "verdict: scaled up:"],
    # exits 0 only when nothing acknowledged was lost or duplicated, every client resumed, the dead node's
    # hosts came back on survivors and the job it was running published exactly once (bench/nodeloss.py)
    "nodeloss": ["| 12 | ", "lost: 0, duplicates: 0 (refs stored twice: 0), never acknowledged: 0",
                 "transcoding job on the dead node: yes", "published results: 1 (track.ready events 1, versions in "
                 "the bucket 1)", "verdict: PASSED"],
    "fingerprint": ["== Fingerprint catalogue:", "-- accuracy:", "-- targets at 16 tracks --",
                    "smoke run: every size measured"],
}




def _clean_env(services: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VERSEFLOW_", "RAY_"))}
    env["VERSEFLOW_DATABASE_URL"] = services["VERSEFLOW_DATABASE_URL"]  # the benchmark makes its own database there
    env["VERSEFLOW_REDIS_URL"] = services["VERSEFLOW_REDIS_URL"]  # under its own key prefix
    return env


def _smoke(module: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"bench.{module}", "--smoke"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S)


@pytest.fixture(scope="session")
def smoke_runs(services) -> Iterator[dict[str, Future]]:
    """Every smoke run, submitted at once; each test waits for its own."""
    modules = sorted(SMOKE_REPORTS, key=lambda m: SMOKE_ORDER.index(m) if m in SMOKE_ORDER else len(SMOKE_ORDER))
    with ThreadPoolExecutor(max_workers=max(1, SMOKE_PARALLEL), thread_name_prefix="smoke") as runner:
        yield {module: runner.submit(_smoke, module, _clean_env(services)) for module in modules}


@pytest.fixture(scope="session", autouse=True)
def _smoke_runs_start_with_the_session(request) -> None:
    if any(getattr(item, "originalname", "") == SMOKE_TEST for item in request.session.items):
        request.getfixturevalue("smoke_runs")


def pytest_collection_modifyitems(session, config, items) -> None:
    """The smoke tests last (in their own order): each waits for its run, which ran beside the rest."""
    items.sort(key=lambda item: getattr(item, "originalname", "") == SMOKE_TEST)
