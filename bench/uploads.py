"""Large uploads through Serve's proxy: multipart ``POST /v1/tracks`` against tus ``/v1/uploads``.

    python -m bench.uploads                 # 50 MB and 200 MB, every route (make bench-uploads)
    python -m bench.uploads --sizes 200     # one size
    python -m bench.uploads --smoke         # 4 MB, one platform: checks that it runs (make test does)

What runs: a fresh database on the PostgreSQL server of ``VERSEFLOW_DATABASE_URL`` (default: the
local test server), Redis from ``VERSEFLOW_REDIS_URL`` under a key prefix of this run, media in a
temporary folder; ``bench/serve_launcher.py`` (a local Ray, Serve's proxy on a free port, one api
replica) as a process group of its own. Transcoding jobs are made unschedulable
(``VERSEFLOW_TRANSCODE_CPUS`` far above the machine's) so that no encoder competes with the uploads.

For each size, a WAV file of that many bytes (valid audio: the upload's decode check must pass), then:

- ``disk`` (the baseline): the same bytes through ``LocalObjectStore.put_stream`` in this process, 1 MiB
  at a time, into the same folder: what hashing, writing and fsync cost without HTTP;
- ``multipart``: ``POST /v1/tracks`` with the file part streamed by httpx;
- ``tus``: tuspy, the whole file in one PATCH (Uppy's and tus-js-client's default);
- ``tus-8MiB``: tuspy with 8 MiB chunks, one PATCH each (1 MiB in smoke mode).

Each route gets a platform of its own (a fresh proxy and replica, warmed up by a 1 MB upload of the
same route), and runs its sizes smallest first; RSS growth is counted from the warmed-up process, so
the peak of a larger upload is not hidden by memory a process kept from a smaller one (RSS rarely
shrinks). ``--shared`` runs every route on one platform (faster; growth then depends on what ran before).
Each route's time runs from the first request to the answer that the track exists (for tus: the
creation, every PATCH, the join of the pieces and the decode check). While it runs, the resident
memory (RSS) of Serve's proxy actor and of the api replica is sampled every 10 ms (psutil; the
processes are found by title among the launcher's descendants) with their CPU time. Printed per
route: MB/s and its ratio to ``disk``, peak RSS and its growth over the value before the upload, CPU
seconds of each process. The stored source's SHA-256 is checked against the file's. Exit status 0
only when every upload made its track with the right bytes. JSON and the launcher's log go to
``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
import uuid
import wave
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import asyncpg
import httpx
import numpy as np
import psutil

from bench import harness
from bench.harness import ROOT, clean_up, create_database, free_port, process_group, say, wait_healthy
from verseflow.settings import Settings
from verseflow.storage import LocalObjectStore

RESULTS = ROOT / "bench" / "results"
MB = 1_000_000
ROUTES = ("multipart", "tus", "tus-chunked")
PROCESS_TITLES = {"proxy": "ProxyActor", "replica": "ServeReplica:verseflow:api"}


@dataclass
class Measure:
    route: str
    size: int
    seconds: float
    peak_rss: dict[str, int] = field(default_factory=dict)
    rss_before: dict[str, int] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)
    ok: bool = True
    note: str = ""

    @property
    def mb_per_s(self) -> float:
        return self.size / MB / self.seconds


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    admin_url = harness.admin_url()
    database = f"vf_upbench_{secrets.token_hex(4)}"
    scratch = Path(tempfile.mkdtemp(prefix="verseflow-upbench-"))
    settings = harness.run_settings(database, "upbench", var_dir=scratch / "var", storage_dir=scratch / "media",
                                    upload_max_bytes=max(args.sizes) * MB + MB)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    load_before = os.getloadavg()
    measures: list[Measure] = []
    try:
        asyncio.run(create_database(admin_url, database, settings))
        files = {size_mb: write_wav(scratch / f"upload-{size_mb}mb.wav", size_mb * MB) for size_mb in args.sizes}
        digests = {size_mb: _sha256(path) for size_mb, path in files.items()}
        warm_up = write_wav(scratch / "warm-up.wav", MB)
        measures += [_disk_baseline(path, scratch / "media") for path in files.values()]
        with ExitStack() as shared:
            log_path = RESULTS / f"uploads-{stamp}.log"
            platform = None if args.fresh else shared.enter_context(_platform(settings, log_path))
            owner: dict[str, str] | None = None
            for route in ROUTES:
                with nullcontext(platform) if platform else _platform(settings, log_path) as (url, processes):
                    owner = owner or _artist(url)
                    _upload(route, url, owner, warm_up, processes, args.chunk_mib)  # imports, pools, first requests
                    warmed = {role: p.memory_info().rss for role, p in processes.items()}
                    for size_mb, path in files.items():
                        measure = _upload(route, url, owner, path, processes, args.chunk_mib, rss_before=warmed)
                        measure.ok = measure.ok and asyncio.run(_source_matches(settings, measure.note,
                                                                                digests[size_mb]))
                        measures.append(measure)
                        say(f"{route} {size_mb} MB: {measure.mb_per_s:.1f} MB/s" + ("" if measure.ok else " FAILED"))
                        for folder in ("uploads", "resumable"):
                            shutil.rmtree(scratch / "media" / folder, ignore_errors=True)
    finally:
        asyncio.run(clean_up(admin_url, settings, database))
        shutil.rmtree(scratch, ignore_errors=True)

    print(_report(measures, load_before))
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    result_file = RESULTS / f"uploads-{stamp}.json"
    result_file.write_text(json.dumps({"load_before": load_before, "measures": [
        asdict(m) | {"mb_per_s": m.mb_per_s} for m in measures]}, indent=2))
    print(f"\nfigures written to {result_file.relative_to(ROOT)}")
    return 0 if all(m.ok for m in measures) else 1


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Large uploads through Serve: multipart against tus.")
    parser.add_argument("--sizes", type=lambda text: [int(s) for s in text.split(",")], default=[50, 200],
                        help="upload sizes in MB (10^6 bytes), comma-separated")
    parser.add_argument("--chunk-mib", type=int, default=8, help="PATCH size of the chunked tus route")
    parser.add_argument("--shared", dest="fresh", action="store_false",
                        help="one platform for every upload (faster; RSS growth then depends on what ran before)")
    parser.add_argument("--smoke", action="store_true", help="4 MB, 1 MiB chunks, one platform: for make test")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.chunk_mib, args.fresh = [4], 1, False
    return args


@contextmanager
def _platform(settings: Settings, log_path: Path) -> Iterator[tuple[str, dict[str, psutil.Process]]]:
    """Serve with one api replica; yields its URL and the proxy and replica processes."""
    port = free_port()
    env = {**os.environ, "VERSEFLOW_DATABASE_URL": settings.database_url, "VERSEFLOW_REDIS_URL": settings.redis_url,
           "VERSEFLOW_REDIS_PREFIX": settings.redis_prefix, "VERSEFLOW_JWT_SECRET": settings.secret(),
           "VERSEFLOW_VAR_DIR": str(settings.var_dir), "VERSEFLOW_STORAGE_DIR": str(settings.storage_dir),
           "VERSEFLOW_UPLOAD_MAX_BYTES": str(settings.upload_max_bytes), "VERSEFLOW_TRANSCODE_CPUS": "1000",
           "VERSEFLOW_LOGIN_ATTEMPTS_PER_IP": "1000"}
    command = [sys.executable, "-m", "bench.serve_launcher", str(port), "1"]
    with process_group(f"serve on port {port}", command, env, log_path) as launcher:
        base_url = f"http://127.0.0.1:{port}"
        wait_healthy(launcher, base_url, log_path)
        yield base_url, _serve_processes(launcher.pid)


def _serve_processes(launcher_pid: int) -> dict[str, psutil.Process]:
    """Serve's proxy actor and the api replica among the launcher's descendants, by process title."""
    found: dict[str, psutil.Process] = {}
    for process in psutil.Process(launcher_pid).children(recursive=True):
        try:
            title = " ".join(process.cmdline())
        except psutil.Error:
            continue
        for role, marker in PROCESS_TITLES.items():
            if marker in title:
                found[role] = process
    missing = set(PROCESS_TITLES) - set(found)
    if missing:
        raise RuntimeError(f"no Serve process titled {[PROCESS_TITLES[m] for m in missing]} under the launcher")
    return found


def _artist(base_url: str) -> dict[str, str]:
    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    with httpx.Client(base_url=base_url, timeout=60) as http:
        http.post("/v1/auth/register", json={"email": email, "password": "bench password 1",
                                             "display_name": "Bench", "role": "artist"}).raise_for_status()
        token = http.post("/v1/auth/token", data={"username": email, "password": "bench password 1"})
        headers = {"Authorization": f"Bearer {token.raise_for_status().json()['access_token']}"}
        artist = http.post("/v1/artists", json={"name": "Bench Artist"}, headers=headers).raise_for_status()
    return {"artist_id": artist.json()["id"], **headers}


def write_wav(path: Path, size: int) -> Path:
    """A 44.1 kHz stereo 16-bit WAV of exactly ``size`` bytes: a tone, so every sample decodes."""
    frames = (size - 44) // 4
    second = (np.sin(2 * np.pi * 440 * np.arange(44100) / 44100) * 12000).astype("<i2")
    block = np.repeat(second, 2).tobytes()  # one second, both channels
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(44100)
        left = frames
        while left > 0:
            take = min(left, 44100)
            out.writeframes(block[: take * 4])
            left -= take
    with path.open("ab") as tail:  # the odd bytes the frame size leaves
        tail.write(b"\0" * (size - path.stat().st_size))
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as reader:
        while block := reader.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _disk_baseline(path: Path, media: Path) -> Measure:
    async def chunks() -> AsyncIterator[bytes]:
        with path.open("rb") as reader:
            while block := reader.read(1 << 20):
                yield block

    store = LocalObjectStore(media)
    started = time.perf_counter()
    asyncio.run(store.put_stream("baseline/source", chunks(), max_bytes=path.stat().st_size))
    elapsed = time.perf_counter() - started
    store.delete_prefix("baseline")
    return Measure("disk", path.stat().st_size, elapsed)


def _upload(route: str, base_url: str, owner: dict[str, str], path: Path, processes: dict[str, psutil.Process],
            chunk_mib: int, *, rss_before: dict[str, int] | None = None) -> Measure:
    size = path.stat().st_size
    run: Callable[[], str] = {
        "multipart": lambda: _multipart(base_url, owner, path),
        "tus": lambda: _tus(base_url, owner, path, chunk_size=None),
        "tus-chunked": lambda: _tus(base_url, owner, path, chunk_size=chunk_mib << 20),
    }[route]
    name = f"tus-{chunk_mib}MiB" if route == "tus-chunked" else route
    with _sampling(processes) as sample:
        started = time.perf_counter()
        try:
            track_id, ok = run(), True
        except Exception as exc:  # noqa: BLE001 - reported, and the exit status says so
            track_id, ok = f"{exc!r}"[:300], False
        elapsed = time.perf_counter() - started
    return Measure(name, size, elapsed, peak_rss=sample.peak, rss_before=rss_before or sample.before,
                   cpu_s=sample.cpu_s(), ok=ok, note=track_id)


def _multipart(base_url: str, owner: dict[str, str], path: Path) -> str:
    with httpx.Client(base_url=base_url, timeout=600) as http, path.open("rb") as body:
        response = http.post("/v1/tracks", data={"title": "Bench multipart", "artist_id": owner["artist_id"]},
                             files={"file": (path.name, body, "audio/wav")},
                             headers={"Authorization": owner["Authorization"]})
    if response.status_code != 202:
        raise RuntimeError(f"multipart upload answered {response.status_code}: {response.text[:300]}")
    return response.json()["id"]


def _tus(base_url: str, owner: dict[str, str], path: Path, *, chunk_size: int | None) -> str:
    from tusclient.client import TusClient

    client = TusClient(f"{base_url}/v1/uploads", headers={"Authorization": owner["Authorization"]})
    options = {"chunk_size": chunk_size} if chunk_size else {}
    uploader = client.uploader(str(path), metadata={"title": "Bench tus", "artist_id": owner["artist_id"],
                                                    "filename": path.name, "filetype": "audio/wav"}, **options)
    uploader.upload()
    track_id = uploader.request.response_headers.get("x-track-id")
    if track_id is None:
        raise RuntimeError(f"the last PATCH did not name a track: {uploader.request.response_headers}")
    return track_id


class _Sampler:
    """Peak RSS of some processes, sampled on a thread, and their CPU time over the same span."""

    def __init__(self, processes: dict[str, psutil.Process], interval_s: float = 0.01) -> None:
        self.processes = processes
        self.interval_s = interval_s
        self.before = {role: p.memory_info().rss for role, p in processes.items()}
        self.peak = dict(self.before)
        self._cpu_before = {role: _cpu(p) for role, p in processes.items()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for role, process in self.processes.items():
                self.peak[role] = max(self.peak[role], process.memory_info().rss)
            self._stop.wait(self.interval_s)

    def cpu_s(self) -> dict[str, float]:
        return {role: round(_cpu(p) - self._cpu_before[role], 2) for role, p in self.processes.items()}


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


@contextmanager
def _sampling(processes: dict[str, psutil.Process]) -> Iterator[_Sampler]:
    sampler = _Sampler(processes)
    sampler._thread.start()
    try:
        yield sampler
    finally:
        sampler._stop.set()
        sampler._thread.join()


async def _source_matches(settings: Settings, track_id: str, digest: str) -> bool:
    """The track exists and its stored source is the file, byte for byte."""
    try:
        track = uuid.UUID(track_id)
    except ValueError:
        return False
    conn = await asyncpg.connect(settings.database_url)
    try:
        stored = await conn.fetchval("SELECT source_sha256 FROM tracks WHERE id = $1", track)
    finally:
        await conn.close()
    return stored == digest


def _report(measures: list[Measure], load_before: tuple[float, float, float]) -> str:
    lines = [f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} "
             f"({os.cpu_count()} cores)", "",
             "| route | MB | MB/s | × disk | proxy peak RSS MB (+growth) | replica peak RSS MB (+growth) "
             "| CPU s proxy / replica |",
             "|---|---|---|---|---|---|---|"]
    baseline = {}
    for m in sorted(measures, key=lambda m: (m.size, m.route != "disk")):
        if m.route == "disk":
            baseline[m.size] = m.mb_per_s
            lines.append(f"| disk (baseline) | {m.size // MB} | {m.mb_per_s:.1f} | 1.00 | | | |")
            continue
        rss = {role: f"{m.peak_rss[role] / 2**20:.0f} (+{(m.peak_rss[role] - m.rss_before[role]) / 2**20:.0f})"
               for role in PROCESS_TITLES}
        status = "" if m.ok else f" FAILED: {m.note}"
        lines.append(f"| {m.route}{status} | {m.size // MB} | {m.mb_per_s:.1f} | {m.mb_per_s / baseline[m.size]:.2f} "
                     f"| {rss['proxy']} | {rss['replica']} | {m.cpu_s['proxy']:.1f} / {m.cpu_s['replica']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
