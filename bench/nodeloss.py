"""Losing a Ray node under load: a head and two workers on this machine, one worker killed mid-chat
and mid-transcode.

    .venv/bin/python -m bench.nodeloss              # full run: two sizes, a fresh cluster each (make bench-nodeloss)
    .venv/bin/python -m bench.nodeloss --smoke      # one small run (make test): exits 0 only if nothing was lost

What runs, per size: a fresh database (``VERSEFLOW_DATABASE_URL``'s server), Redis under a key prefix of
this run, media in S3 (moto's server over HTTP, as ``tests/test_storage_s3.py`` uses it), and a
``ray.cluster_utils.Cluster`` of three nodes (one CPU each, no dashboard): the head and two workers,
each worker offering one ``transcode_slots`` (jobs run on workers only). On it the platform's realtime
side exactly as ``make up`` runs it, spread as a multi-node deployment is: one edge per node (each on
its own port, since the nodes share a machine), ``room_hosts`` and ``session_hosts`` = 3 spread one
per node (``actors.room_host.spread_hosts``), and one upload's ``TranscodeJob`` (a long tone, so it is
still encoding when the node goes).

The load: chat clients, one user each, spread over the three edges and over rooms that cover every
room host; each sends a message with a fresh ``ref`` every ``--chat-every`` seconds and counts it
acknowledged when its own message comes back with a seq (the room log has it then). A message
answered with an error is sent again with the same ref; a socket that closes reconnects through the
next edge and rejoins with the last seq it saw, then sends again what was not acknowledged.

First the baseline, measured in the same run: ``--baseline`` clients close their socket and reconnect
to another edge while every node is up (reconnect time = socket gone → ``joined`` again). Then, while
the job encodes, the worker running it is removed (``cluster.remove_node``, not graceful: its raylet
and every worker process on it are killed) and the load goes on ``--after`` seconds. Measured:

- reconnect time p50/p99 of the clients whose edge died, and the ratio to the baseline;
- room recovery: in each room whose host died, the longest wait for an acknowledgement from the kill
  on (its clients keep sending: the room is back when their messages are acknowledged again);
- messages acknowledged, and lost (an acknowledged message some member of its room never received,
  or that is not in the room log), duplicates (a seq received twice, a ref stored twice);
- rooms and sessions reactivated: each host of the dead node running again on a survivor, every
  room's online members and every user's devices as the clients see them;
- the transcoding job: attempts, and published results (one ``ready`` track, one ``track.ready``
  event, one version in the bucket).

Exit status: 0 when every size lost nothing, duplicated nothing, every client resumed, the hosts came
back on survivors and the job published exactly once. The JSON goes to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from accounts import service as accounts
from accounts.model import Principal, Role
from bench import harness
from bench.harness import ROOT, clean_up, create_database, free_port, say
from bench.loadgen import percentile
from bench.uploads import write_wav
from catalog import artists
from rooms import service as rooms
from rooms.placement import host_index
from verseflow.db import create_pool
from verseflow.security import issue_access_token
from verseflow.settings import Settings

RESULTS = ROOT / "bench" / "results"
BUCKET = "verseflow-nodeloss"
NODES = ("head", "worker-1", "worker-2")
HOSTS_PER_POOL = 3  # one room host and one session host per node
#: Ray notices a dead node after missed health checks; the defaults (3 s apart, 5 misses) take ~20 s. Not
#: tighter than this: beside a busy test suite a live raylet may answer late, and a live node declared dead
#: would be a different experiment.
HEALTH_CHECKS = {"health_check_period_ms": 1000, "health_check_timeout_ms": 3000, "health_check_failure_threshold": 5}
WAV_SECONDS = 150  # long enough to be mid-encode when the node goes, on a busy machine
CONNECT_TIMEOUT_S = 5.0


@dataclass
class JobFigures:
    """The transcoding job that was encoding on the removed node."""

    on_victim: bool = False
    attempts: int = 0
    status: str = ""
    published: int = 0  # ready tracks with media
    events: int = 0  # track.ready in the outbox
    versions: int = 0  # version prefixes in the bucket

    def passed(self) -> bool:
        return (self.on_victim and self.status == "ready" and self.published == 1 and self.events == 1
                and self.versions == 1 and self.attempts >= 2)


@dataclass
class Figures:
    """One size's outcome (what the report prints and the JSON holds)."""

    clients: int
    rooms: int
    baseline_s: list[float] = field(default_factory=list)  # reconnects with every node up
    reconnect_s: list[float] = field(default_factory=list)  # reconnects of the dead edge's clients
    reconnect_live_room_s: list[float] = field(default_factory=list)  # of those: in rooms whose host lived
    reconnect_dead_room_s: list[float] = field(default_factory=list)  # in rooms whose host died with the node
    room_recovery_s: list[float] = field(default_factory=list)  # per room whose host died
    moved_clients: int = 0  # on the dead edge when it died
    resumed_clients: int = 0  # acknowledged a message sent after the loss
    acknowledged: int = 0
    unacknowledged: int = 0  # still without an acknowledgement at the end
    lost: int = 0  # (client, acknowledged message) pairs missing at the client, or refs missing from the log
    duplicates: int = 0  # a seq received twice by one client
    stored_twice: int = 0  # a ref in the room log twice
    hosts_on_victim: list[str] = field(default_factory=list)
    hosts_back: list[str] = field(default_factory=list)  # of those, alive on a surviving node at the end
    rooms_checked: int = 0
    rooms_online_ok: int = 0  # the host's online list is exactly the room's clients, one device each
    users_checked: int = 0
    sessions_ok: int = 0  # the session host counts exactly one device for the user
    answers: dict[str, int] = field(default_factory=dict)  # joined, errors and closes by code, all clients
    job: JobFigures = field(default_factory=lambda: JobFigures())
    seconds: float = 0.0

    def passed(self) -> bool:
        return (self.lost == 0 and self.duplicates == 0 and self.stored_twice == 0 and self.unacknowledged == 0
                and self.resumed_clients == self.clients and self.moved_clients > 0
                and sorted(self.hosts_back) == sorted(self.hosts_on_victim) and bool(self.hosts_on_victim)
                and self.rooms_online_ok == self.rooms_checked and self.sessions_ok == self.users_checked
                and self.job.passed())


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` cleans up as Ctrl-C does
    RESULTS.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    runs: list[Figures] = []
    with _s3_server() as endpoint:
        for size in args.clients:
            runs.append(_run(size, endpoint, args))
            say(f"{size} clients: {'passed' if runs[-1].passed() else 'FAILED'}")
    print(_report(runs, args, load_before))
    result_file = RESULTS / f"nodeloss-{time.strftime('%Y%m%d-%H%M%S')}.json"
    result_file.write_text(json.dumps({"config": vars(args), "load_average_before": load_before,
                                       "runs": [asdict(r) for r in runs]}))
    print(f"\nfigures written to {result_file.relative_to(ROOT)}")
    return 0 if runs and all(r.passed() for r in runs) else 1


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Kill a Ray worker node under chat load and a transcoding job.")
    parser.add_argument("--clients", type=int, nargs="+", default=[30, 90], help="chat clients, one run per size")
    parser.add_argument("--clients-per-room", type=int, default=5)
    parser.add_argument("--chat-every", type=float, default=0.5, help="seconds between a client's messages")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of chat before the baseline")
    parser.add_argument("--baseline", type=int, default=6, help="clients that reconnect while every node is up")
    parser.add_argument("--after", type=float, default=20.0, help="seconds of chat after the node is gone")
    parser.add_argument("--settle-max", type=float, default=90.0, help="longest wait for everything to resume")
    parser.add_argument("--smoke", action="store_true", help="one run of 12 clients (make test)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.clients, args.clients_per_room, args.warmup, args.baseline, args.after = [12], 3, 3.0, 3, 10.0
    return args


@contextlib.contextmanager
def _s3_server() -> Any:
    """moto's S3 server over HTTP in this process, reachable from every node's workers."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    for name, value in (("AWS_ACCESS_KEY_ID", "verseflow-bench"), ("AWS_SECRET_ACCESS_KEY", "verseflow-bench"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(name, value)  # inherited by the nodes' workers
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    try:
        yield endpoint
    finally:
        server.stop()


def _run(size: int, endpoint: str, args: argparse.Namespace) -> Figures:
    admin_url = harness.admin_url()
    database = f"vf_nodeloss_{secrets.token_hex(4)}"
    scratch = Path(tempfile.mkdtemp(prefix="verseflow-nodeloss-"))
    settings = harness.run_settings(
        database, "nodeloss", var_dir=scratch / "var", storage_dir=scratch / "cache", storage_backend="s3",
        s3_endpoint_url=endpoint, s3_bucket=BUCKET, s3_region="us-east-1", room_hosts=HOSTS_PER_POOL,
        session_hosts=HOSTS_PER_POOL, room_backlog_max=100_000, ws_idle_timeout_s=300.0)
    started = time.monotonic()
    try:
        asyncio.run(create_database(admin_url, database, settings))
        seed = asyncio.run(_seed(settings, size, args, scratch))
        with _cluster(settings) as cluster:
            figures = asyncio.run(_measure(cluster, settings, seed, args))
    finally:
        asyncio.run(clean_up(admin_url, settings, database))
        shutil.rmtree(scratch, ignore_errors=True)
    figures.seconds = time.monotonic() - started
    return figures


# --- seeding -------------------------------------------------------------------------------------


@dataclass
class Seed:
    users: list[tuple[uuid.UUID, str]]  # (user id, token), one per client
    rooms: list[uuid.UUID]
    track_id: uuid.UUID


async def _seed(settings: Settings, size: int, args: argparse.Namespace, scratch: Path) -> Seed:
    """Users whose sessions cover every session host, rooms covering every room host, one accepted upload."""
    from audio import service as audio
    from verseflow.storage import object_store

    pool = await create_pool(settings, max_size=4)
    try:
        owner = await accounts.register(pool, settings, email="owner@bench.example", password="bench password",
                                        display_name="Owner", role=Role.ARTIST)
        who = Principal(owner.id, Role.ARTIST)
        room_count = max(HOSTS_PER_POOL, -(-size // args.clients_per_room))
        room_ids = await _covering(room_count, settings.room_hosts,
                                   lambda i: _room(pool, who, i))
        users = await _covering(size, settings.session_hosts, lambda i: _user(pool, settings, i))
        artist = await artists.create_artist(pool, who, name="Node Loss", bio="the multi-node bench")
        track_id = uuid.uuid4()
        store = object_store(settings)
        source = write_wav(scratch / "tone.wav", 44 + WAV_SECONDS * 44100 * 4)
        stored = store.put_file(audio.source_key(track_id), source)
        await audio.accept_upload(pool, store, settings, who, track_id,
                                  audio.UploadFields("Node loss", uuid.UUID(str(artist["id"]))), stored)
        store.cache.delete_prefix("uploads")  # the job's node downloads it from the bucket
    finally:
        await pool.close()
    return Seed([(u, _token(settings, u)) for u in users], room_ids, track_id)


async def _covering(count: int, hosts: int, make: Any) -> list[uuid.UUID]:
    """``count`` ids from ``make`` spread evenly over ``hosts`` hosts (ids hashed onto an
    over-represented host are left unused), listed host by host in turn."""
    per_host = -(-count // hosts)
    by_host: dict[int, list[uuid.UUID]] = {h: [] for h in range(hosts)}
    for _ in range(count * 10 + 50):
        if all(len(ids) >= per_host for ids in by_host.values()):
            break
        made = await make(sum(len(ids) for ids in by_host.values()))
        by_host[host_index(str(made), hosts)].append(made)
    else:
        raise RuntimeError("ids do not cover the hosts")
    spread = [by_host[h][i] for i in range(per_host) for h in range(hosts)]
    return spread[:count]


async def _room(pool: asyncpg.Pool, who: Principal, index: int) -> uuid.UUID:
    room = await rooms.create_room(pool, who, name=f"node loss {index}", visibility="public")
    return room["id"]


async def _user(pool: asyncpg.Pool, settings: Settings, index: int) -> uuid.UUID:
    user = await accounts.register(pool, settings, email=f"client{index}@bench.example", password="bench password",
                                   display_name=f"Client {index}", role=Role.LISTENER)
    return user.id


def _token(settings: Settings, user_id: uuid.UUID) -> str:
    return issue_access_token(user_id, Role.LISTENER.value, secret=settings.secret(), ttl_s=3600,
                              issuer=settings.jwt_issuer)[0]


# --- the cluster ---------------------------------------------------------------------------------


@dataclass
class ClusterRun:
    cluster: Any  # ray.cluster_utils.Cluster
    node_ids: dict[str, str]  # name -> Ray node id
    nodes: dict[str, Any]  # name -> ray._private.node.Node (the workers)
    edges: dict[str, str]  # node id -> the URL of its edge


@contextlib.contextmanager
def _cluster(settings: Settings) -> Any:
    """Head and two workers, the driver connected, one edge per node, hosts spread; all stopped after."""
    import ray
    from ray.cluster_utils import Cluster

    from actors.edge import start_edges, stop_edges
    from actors.room_host import spread_hosts
    from actors.transcode import SLOT

    os.environ.setdefault("RAY_worker_niceness", "0")  # as `make up` (cluster/local.py) runs the actors
    say("starting a Ray cluster: head + 2 workers")
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False, "resources": {"node-head": 1},
        "_system_config": HEALTH_CHECKS})
    workers = {name: cluster.add_node(num_cpus=1, resources={f"node-{name}": 1, SLOT: 1}) for name in NODES[1:]}
    edges: list[Any] = []
    try:
        ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
        node_ids = _node_ids()
        ports = {node_id: free_port() for node_id in node_ids.values()}
        spread_hosts(settings, [node_ids[name] for name in NODES])
        edges = start_edges(settings, ports)
        urls = {node_id: f"ws://127.0.0.1:{port}/v1/ws" for node_id, port in ports.items()}
        say("cluster up: " + ", ".join(f"{name} {node_ids[name][:8]} edge :{ports[node_ids[name]]}"
                                       for name in NODES))
        yield ClusterRun(cluster, node_ids, workers, urls)
    finally:
        from actors.room_host import stop_hosts

        with contextlib.suppress(Exception):
            stop_edges(edges)
        with contextlib.suppress(Exception):
            stop_hosts(settings)
        ray.shutdown()
        cluster.shutdown()


def _node_ids() -> dict[str, str]:
    """Node name (by its marker resource) -> Ray node id."""
    import ray

    found = {}
    for node in ray.nodes():
        for name in NODES:
            if node.get("Alive") and f"node-{name}" in node["Resources"]:
                found[name] = node["NodeID"]
    return found


def _actor_nodes() -> dict[str, tuple[str, str]]:
    """Named actors -> (state, node id of their last placement), from the GCS actor table (no dashboard
    here); a live actor wins over a dead one of the same name."""
    from ray._private import state

    found: dict[str, tuple[str, str]] = {}
    for info in state.actors().values():
        if info["Name"] and (info["Name"] not in found or info["State"] != "DEAD"):
            found[info["Name"]] = (info["State"], info["Address"]["NodeID"])
    return found


# --- the clients ---------------------------------------------------------------------------------


class ChatClient:
    """One user's socket in one room: sends numbered messages, acknowledges its own, resumes after loss."""

    def __init__(self, index: int, user: tuple[uuid.UUID, str], room: uuid.UUID, edges: list[str]) -> None:
        self.index, self.user_id, self.token, self.room = index, str(user[0]), user[1], str(room)
        self.edges = edges  # this client's edge first, the others in turn after it
        self.edge = 0
        self.ws: websockets.ClientConnection | None = None
        self.base: int | None = None  # the room's seq at the first join: everything after it is owed
        self.last = 0
        self.received: set[int] = set()
        self.duplicates = 0
        self.pending: dict[str, float] = {}  # ref -> when first sent
        self.resent: set[str] = set()
        self.acked: dict[str, int] = {}  # ref -> seq
        self.acked_at: list[tuple[float, int]] = []  # (time, seq) of each acknowledgement
        self.reconnects: list[tuple[float, float]] = []  # (socket gone, joined again)
        self.answers: dict[str, int] = {}  # joined and error messages by code, socket closes by close code
        self.joined = asyncio.Event()
        self.sending = True
        self._stopped = False
        self._gone: float | None = None  # when the socket went, until joined again
        self.rejoining = False  # a join is on its way: new messages wait for its `joined`
        self.replayed_upto = 0  # a join with `since` replays seqs up to here that may have arrived already
        self._count = 0

    async def connect(self) -> None:
        """Connect to the current edge (or the next ones) and join, resuming from ``last``."""
        while True:
            url = self.edges[self.edge % len(self.edges)]
            try:
                self.ws = await websockets.connect(f"{url}?token={self.token}", open_timeout=CONNECT_TIMEOUT_S,
                                                   compression=None, max_queue=None)
                ready = json.loads(await asyncio.wait_for(self.ws.recv(), CONNECT_TIMEOUT_S))
                if ready.get("type") != "ready":
                    raise ConnectionError(f"first message {ready}")
                self.rejoining = False
                self._rejoin()
                return
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed, ConnectionError):
                if self.ws is not None:
                    with contextlib.suppress(Exception):
                        await self.ws.close()
                self.edge += 1
                await asyncio.sleep(0.2)

    async def run(self) -> None:
        """Read until closed; a socket closed by anyone but :meth:`close` reconnects through the next edge."""
        await self.connect()
        while True:
            try:
                async for frame in self.ws:
                    self._on(json.loads(frame))
            except ConnectionClosed:
                pass
            if self._stopped:
                return
            code = self.ws.close_code if self.ws.close_code is not None else "none"
            self.answers[f"closed {code}"] = self.answers.get(f"closed {code}", 0) + 1
            self._gone = time.monotonic()
            self.edge += 1
            await self.connect()

    def _on(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind in ("error", "joined"):
            key = f"{kind} {message.get('code', '')}".strip()
            self.answers[key] = self.answers.get(key, 0) + 1
        if kind == "joined":
            self.rejoining = False
            if self.base is None:
                self.base = self.last = message["seq"]
            if self._gone is not None:
                self.reconnects.append((self._gone, time.monotonic()))
                self._gone = None
            self.joined.set()
            for ref in list(self.pending):  # what may have been lost with the old socket
                self._send(ref)
        elif kind == "chat":
            seq, ref = message["seq"], message.get("ref")
            mine = message["from"] == self.user_id and ref in self.pending
            if seq in self.received:
                replayed = seq <= self.replayed_upto or (message["from"] == self.user_id and ref in self.resent)
                self.duplicates += not replayed
            elif self.base is not None and seq > self.base:
                self.received.add(seq)
                self.last = max(self.last, seq)
            if mine:
                del self.pending[ref]
                self.acked[ref] = seq
                self.acked_at.append((time.monotonic(), seq))
        elif kind == "error" and message.get("ref") in self.pending:
            if message["code"] == "not_joined":  # the room's host restarted and lost us: its `joined` resends
                self._rejoin()
            else:
                asyncio.get_running_loop().call_later(0.3, self._send, message["ref"])
        elif kind == "error" and message.get("room") == self.room and message.get("ref") is None:
            self.rejoining = False  # the join failed (its host is restarting): again, shortly
            asyncio.get_running_loop().call_later(0.3, self._rejoin)

    def _rejoin(self) -> None:
        """Join (again) from the last seq received, once at a time."""
        if self.rejoining:
            return
        self.rejoining = True
        self.replayed_upto = self.last
        since = {} if self.base is None else {"since": self.last}
        asyncio.ensure_future(self._write({"type": "join", "room": self.room, **since}))

    def _send(self, ref: str) -> None:
        if ref not in self.pending or self.ws is None:
            return
        self.resent.add(ref)
        asyncio.ensure_future(self._write({"type": "chat", "room": self.room, "text": f"{ref} again", "ref": ref}))

    async def _write(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionClosed, AttributeError):
            await self.ws.send(json.dumps(message))

    async def chat_loop(self, every: float) -> None:
        await self.joined.wait()
        await asyncio.sleep(every * (self.index % 10) / 10)
        while self.sending:
            if self._gone is None and not self.rejoining:
                self._count += 1
                ref = f"c{self.index}-{self._count}"
                self.pending[ref] = time.monotonic()
                await self._write({"type": "chat", "room": self.room, "text": ref, "ref": ref})
            await asyncio.sleep(every)

    async def bounce(self) -> None:
        """Close the socket ourselves (the baseline): ``run`` reconnects through the next edge."""
        if self.ws is not None:
            await self.ws.close()

    async def close(self) -> None:
        self._stopped, self.sending = True, False
        if self.ws is not None:
            await self.ws.close()


# --- the measurement -----------------------------------------------------------------------------


async def _measure(run: ClusterRun, settings: Settings, seed: Seed, args: argparse.Namespace) -> Figures:
    from actors import transcode

    order = [run.edges[run.node_ids[name]] for name in NODES]
    clients = [ChatClient(i, user, seed.rooms[i % len(seed.rooms)], _rotated(order, _edge_of(i, len(seed.rooms))))
               for i, user in enumerate(seed.users)]
    figures = Figures(clients=len(clients), rooms=len(seed.rooms))
    readers = [asyncio.ensure_future(c.run()) for c in clients]
    await asyncio.wait_for(asyncio.gather(*(c.joined.wait() for c in clients)), 120)
    writers = [asyncio.ensure_future(c.chat_loop(args.chat_every)) for c in clients]
    say(f"{len(clients)} clients in {len(seed.rooms)} rooms over 3 edges; chatting")
    await asyncio.to_thread(transcode.launch, settings, seed.track_id)
    await asyncio.sleep(args.warmup)

    # The baseline: clients of the head's edge bounce to the next edge while every node is up.
    bounced = [c for c in clients if c.edges[0] == order[0]][:args.baseline]
    await asyncio.gather(*(c.bounce() for c in bounced))
    await _until(lambda: all(c.reconnects for c in bounced), 60, "baseline reconnects")
    figures.baseline_s = [c.reconnects[0][1] - c.reconnects[0][0] for c in bounced]

    names = {node_id: name for name, node_id in run.node_ids.items()}
    placed = await asyncio.to_thread(_actor_nodes)
    say("placement: " + ", ".join(f"{actor} on {names.get(node, node[:8])}"
                                  for actor, (_, node) in sorted(placed.items())
                                  if actor.startswith(("verseflow-", "transcode-"))))
    victim = await _victim(run, settings, seed.track_id)
    victim_id = run.node_ids[victim]
    placed = await asyncio.to_thread(_actor_nodes)
    figures.hosts_on_victim = sorted(name for name, (_, node) in placed.items()
                                     if node == victim_id and name.startswith("verseflow-") and "host" in name)
    figures.job.on_victim = placed.get(transcode.NAME.format(seed.track_id), ("", ""))[1] == victim_id
    victim_url = run.edges[victim_id]
    moved = [c for c in clients if c.edges[c.edge % 3] == victim_url]
    dead_rooms = {str(r) for r in seed.rooms if f"verseflow-room-host-{host_index(str(r), settings.room_hosts)}"
                  in figures.hosts_on_victim}
    before = {c.index: len(c.reconnects) for c in clients}
    say(f"removing {victim} (edge {victim_url}, {len(moved)} clients; hosts {figures.hosts_on_victim}; "
        f"the transcoding job {'is' if figures.job.on_victim else 'is NOT'} there)")
    killed = time.monotonic()
    await asyncio.to_thread(run.cluster.remove_node, run.nodes[victim], False)
    say(f"{victim} removed ({time.monotonic() - killed:.1f}s); chatting on for {args.after:g}s")
    await asyncio.sleep(args.after)
    await _until(lambda: all(len(c.reconnects) > before[c.index] for c in moved), args.settle_max,
                 "clients of the dead edge reconnected")
    await _until(lambda: all(any(t > killed for t, _ in c.acked_at) for c in clients), args.settle_max,
                 "every client acknowledged after the loss")

    for c in clients:
        c.sending = False
    await _until(lambda: all(not c.pending for c in clients), args.settle_max, "pending messages acknowledged")
    figures.moved_clients = len(moved)
    for c in moved:
        gone, joined = c.reconnects[before[c.index]]
        figures.reconnect_s.append(joined - gone)
        (figures.reconnect_dead_room_s if c.room in dead_rooms else figures.reconnect_live_room_s).append(
            joined - gone)
    figures.resumed_clients = sum(1 for c in clients if any(t > killed for t, _ in c.acked_at))
    for room in dead_rooms:  # the longest silence: from the kill, between acknowledgements in the room
        acks = sorted([killed, *(t for c in clients if c.room == room for t, _ in c.acked_at if t > killed)])
        figures.room_recovery_s.append(max(b - a for a, b in zip(acks, acks[1:], strict=False)) if len(acks) > 1
                                       else args.after)
    await _settle_job(settings, seed.track_id, args.settle_max)
    await _check(figures, clients, settings, seed, victim_id)
    for c in clients:
        await c.close()
    await asyncio.gather(*readers, *writers, return_exceptions=True)
    return figures


def _edge_of(client: int, rooms: int) -> int:
    """The edge of client ``client`` (in room ``client mod rooms``): shifted by one each round of rooms, so
    that a room has clients on every edge and an edge's clients are in rooms of every host (rooms are
    listed host by host in turn: without the shift, edge and room host would coincide)."""
    return (client + client // rooms) % len(NODES)


def _rotated(edges: list[str], first: int) -> list[str]:
    return edges[first:] + edges[:first]


async def _until(condition: Any, timeout: float, what: str) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            say(f"gave up waiting: {what}")
            return
        await asyncio.sleep(0.2)


async def _victim(run: ClusterRun, settings: Settings, track_id: uuid.UUID) -> str:
    """The worker where the job is encoding, once its first attempt reports progress."""
    from actors import transcode

    pool = await create_pool(settings, min_size=1, max_size=1)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            row = await pool.fetchrow("SELECT state, attempts, progress FROM track_jobs WHERE track_id = $1",
                                      track_id)
            if row["state"] == "running" and row["progress"] > 0:
                break
            if row["state"] not in ("queued", "running"):
                raise RuntimeError(f"the job ended before the node loss: {dict(row)}")
            await asyncio.sleep(0.2)
    finally:
        await pool.close()
    placed = await asyncio.to_thread(_actor_nodes)
    node = placed.get(transcode.NAME.format(track_id), ("", ""))[1]
    for name in NODES[1:]:
        if run.node_ids[name] == node:
            return name
    raise RuntimeError(f"the job runs on no worker: {node}")


async def _settle_job(settings: Settings, track_id: uuid.UUID, timeout: float) -> None:  # noqa: ASYNC109
    pool = await create_pool(settings, min_size=1, max_size=1)
    try:
        deadline = time.monotonic() + max(timeout, 240)
        while time.monotonic() < deadline:
            if await pool.fetchval("SELECT status FROM tracks WHERE id = $1", track_id) != "processing":
                return
            await asyncio.sleep(0.5)
        say("gave up waiting: the transcoding job")
    finally:
        await pool.close()


async def _check(figures: Figures, clients: list[ChatClient], settings: Settings, seed: Seed,
                 victim_id: str) -> None:
    """What the room logs, the hosts and the bucket say once the load has stopped."""
    from actors.room_host import room_host_for, session_host_for
    from verseflow.storage import object_store

    pool = await create_pool(settings, min_size=1, max_size=2)
    try:
        finals = {str(r["room_id"]): r["seq"] for r in await pool.fetch(
            "SELECT room_id, max(seq) AS seq FROM room_messages GROUP BY room_id")}
        await _until(lambda: all(c.last >= finals.get(c.room, 0) for c in clients), 30, "every client caught up")
        stored = {(str(r["room_id"]), r["client_ref"]) for r in await pool.fetch(
            "SELECT room_id, client_ref FROM room_messages")}
        figures.stored_twice = await pool.fetchval(
            "SELECT count(*) - count(DISTINCT (room_id, sender_id, client_ref)) FROM room_messages")
        for c in clients:
            figures.acknowledged += len(c.acked)
            figures.unacknowledged += len(c.pending)
            figures.duplicates += c.duplicates
            for key, count in c.answers.items():
                figures.answers[key] = figures.answers.get(key, 0) + count
            figures.lost += sum(1 for ref in c.acked if (c.room, ref) not in stored)
            owed = set(range((c.base or 0) + 1, finals.get(c.room, 0) + 1))
            figures.lost += len(owed - c.received)
        track = await pool.fetchrow("SELECT t.status, t.media_prefix, j.attempts FROM tracks t "
                                    "JOIN track_jobs j ON j.track_id = t.id WHERE t.id = $1", seed.track_id)
        figures.job.status, figures.job.attempts = track["status"], track["attempts"]
        figures.job.published = await pool.fetchval(
            "SELECT count(*) FROM tracks WHERE id = $1 AND status = 'ready' AND media_prefix IS NOT NULL",
            seed.track_id)
        figures.job.events = await pool.fetchval(
            "SELECT count(*) FROM outbox WHERE type = 'track.ready' AND aggregate_id = $1", str(seed.track_id))
    finally:
        await pool.close()
    store = object_store(settings)
    figures.job.versions = len(await asyncio.to_thread(store.children, f"tracks/{seed.track_id}"))

    placed = await asyncio.to_thread(_actor_nodes)
    figures.hosts_back = sorted(name for name in figures.hosts_on_victim
                                if placed.get(name, ("", victim_id))[0] == "ALIVE"
                                and placed[name][1] != victim_id)
    by_room: dict[str, set[str]] = {}
    for c in clients:
        by_room.setdefault(c.room, set()).add(c.user_id)
    for room, users in by_room.items():
        online = await room_host_for(settings, room).online.remote(uuid.UUID(room))
        figures.rooms_checked += 1
        figures.rooms_online_ok += {m["user"]: m["devices"] for m in online} == dict.fromkeys(users, 1)
    for c in clients:
        devices = await session_host_for(settings, c.user_id).devices.remote(uuid.UUID(c.user_id))
        figures.users_checked += 1
        figures.sessions_ok += devices == 1


# --- the report ----------------------------------------------------------------------------------


def _ms(values: list[float], q: float) -> str:
    return f"{percentile(sorted(values), q) * 1000:.0f}" if values else "-"


def _report(runs: list[Figures], args: argparse.Namespace, load_before: tuple[float, float, float]) -> str:
    lines = [f"\n{os.cpu_count()} CPUs, load average (1, 5, 15 min) before the run: "
             + " ".join(f"{x:.2f}" for x in load_before),
             f"cluster: head + 2 workers on this machine, 1 CPU each; clients chat every {args.chat_every:g}s; "
             f"{args.after:g}s of load after the node loss", "",
             "| clients | rooms | baseline reconnect p50/p99 ms | node-loss reconnect p50/p99 ms | ratio p50 "
             "| room recovery p50/max ms | acknowledged | lost | duplicates | resumed |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        base = percentile(sorted(r.baseline_s), 0.5)
        ratio = f"{percentile(sorted(r.reconnect_s), 0.5) / base:.1f}x" if base and r.reconnect_s else "-"
        lines.append(f"| {r.clients} | {r.rooms} | {_ms(r.baseline_s, 0.5)} / {_ms(r.baseline_s, 0.99)} "
                     f"| {_ms(r.reconnect_s, 0.5)} / {_ms(r.reconnect_s, 0.99)} | {ratio} "
                     f"| {_ms(r.room_recovery_s, 0.5)} / {_ms(r.room_recovery_s, 1.0)} | {r.acknowledged} "
                     f"| {r.lost} | {r.duplicates} | {r.resumed_clients}/{r.clients} |")
    for r in runs:
        lines += ["", f"== {r.clients} clients ({r.seconds:.0f}s)",
                  f"clients moved off the dead edge: {r.moved_clients}, reconnected: {len(r.reconnect_s)}; "
                  f"reconnect p50/p99 ms in rooms whose host lived: {_ms(r.reconnect_live_room_s, 0.5)} / "
                  f"{_ms(r.reconnect_live_room_s, 0.99)} ({len(r.reconnect_live_room_s)} clients), whose host "
                  f"died: {_ms(r.reconnect_dead_room_s, 0.5)} / {_ms(r.reconnect_dead_room_s, 0.99)} "
                  f"({len(r.reconnect_dead_room_s)} clients: their room waits for its host)",
                  f"messages acknowledged: {r.acknowledged}, lost: {r.lost}, duplicates: {r.duplicates} "
                  f"(refs stored twice: {r.stored_twice}), never acknowledged: {r.unacknowledged}",
                  "answers: " + ", ".join(f"{key} {count}" for key, count in sorted(r.answers.items())),
                  f"hosts on the dead node: {', '.join(r.hosts_on_victim) or 'none'}; back on survivors: "
                  f"{len(r.hosts_back)}/{len(r.hosts_on_victim)}",
                  f"rooms with every member online again: {r.rooms_online_ok}/{r.rooms_checked}; "
                  f"users with their session registered: {r.sessions_ok}/{r.users_checked}",
                  f"transcoding job on the dead node: {'yes' if r.job.on_victim else 'no'}; attempts {r.job.attempts}; "
                  f"track {r.job.status}; published results: {r.job.published} (track.ready events "
                  f"{r.job.events}, versions in the bucket {r.job.versions})",
                  f"verdict: {'PASSED' if r.passed() else 'FAILED'}"]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
