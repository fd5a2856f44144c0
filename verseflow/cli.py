"""The ``verseflow`` command: ``up``, ``migrate``, ``status``, ``admin``, ``recs``, ``audio`` and more.

Subcommands stay thin: each calls into the launcher, the kernel or a domain use case. New
capabilities (workers, imports, admin tasks) add a subcommand here. Commands that need the data
services find them as ``make up`` does (:func:`running_services`), so they work the same against
the embedded PostgreSQL and Redis under ``var/`` and against configured ones.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from verseflow import migrations
from verseflow.settings import Settings, get_settings


async def run_migrations(settings: Settings) -> list[str]:
    import asyncpg

    database_url, _ = settings.require_urls()
    conn = await asyncpg.connect(database_url)
    try:
        return [f"{m.version:04d}_{m.name}" for m in await migrations.migrate(conn)]
    finally:
        await conn.close()


def cmd_up(_: argparse.Namespace) -> int:
    from cluster.local import run_forever

    run_forever()
    return 0


class ServicesMissing(RuntimeError):
    """The embedded data services this command would use were never created (``make up`` never ran)."""


@contextmanager
def running_services(settings: Settings, *, redis: bool = True, create: bool = True) -> Iterator[Settings]:
    """``settings`` with the URLs of running data services, for one command.

    Configured URLs are used as they are. Otherwise the embedded servers under ``var_dir`` are
    joined while ``make up`` runs them, or started for this command and stopped after it (pgserver
    counts its users, so leaving never stops a server the platform still uses). With ``create``
    false, a missing embedded database is an error rather than a new empty one.
    """
    from verseflow.embedded import EmbeddedPostgres, EmbeddedRedis

    updates: dict[str, str] = {}
    with ExitStack() as stack:
        if not settings.database_url:
            postgres = EmbeddedPostgres(settings.var_dir / "postgres")
            if not create and not postgres.exists():
                raise ServicesMissing(f"no embedded database in {postgres.data_dir}: run `make up` once, or set "
                                      "VERSEFLOW_DATABASE_URL")
            updates["database_url"] = postgres.start()
            stack.callback(postgres.stop)
        if not redis:
            updates["redis_url"] = settings.redis_url or "unused://"
        elif not settings.redis_url:
            embedded_redis = EmbeddedRedis(settings.var_dir / "redis")
            url = embedded_redis.running_url()
            if url is None:
                url = embedded_redis.start()
                stack.callback(embedded_redis.stop)
            updates["redis_url"] = url
        yield settings.model_copy(update=updates)


def cmd_migrate(_: argparse.Namespace) -> int:
    with running_services(get_settings(), redis=False) as settings:
        applied = asyncio.run(run_migrations(settings))
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    settings = get_settings()
    url = f"http://{settings.http_host}:{settings.http_port}/ready"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as response:
            body = json.load(response)
            code = response.status
    except urllib.error.HTTPError as exc:
        body, code = json.load(exc), exc.code
    except OSError as exc:
        print(f"VerseFlow is not answering on {url}: {exc}")
        return 1
    print(json.dumps({"url": url, "http_status": code, **body}, indent=2))
    return 0 if code == 200 else 1


# --- verseflow admin: the first administrator (and later ones) --------------------------------


def cmd_admin(args: argparse.Namespace) -> int:
    """Grant, revoke or list administrators; exit 1 with the reason on stderr when it cannot."""
    import asyncpg
    import redis

    from verseflow.errors import DomainError

    try:
        with running_services(get_settings(), create=False) as settings:
            lines = asyncio.run(run_admin(settings, args.action, email=getattr(args, "email", None),
                                          role=getattr(args, "role", None)))
    except (DomainError, ServicesMissing) as exc:
        print(f"verseflow admin {args.action}: {exc}", file=sys.stderr)
        return 1
    except (OSError, asyncpg.PostgresError, redis.RedisError) as exc:
        print(f"verseflow admin {args.action}: PostgreSQL or Redis failed: {exc}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    if args.action == "list" and not lines:
        print("no administrators yet: `verseflow admin grant EMAIL` makes the first", file=sys.stderr)
    return 0


async def run_admin(settings: Settings, action: str, *, email: str | None = None, role: str | None = None) -> list[str]:
    """One ``verseflow admin`` action through the accounts use cases (the same role change as
    ``PUT /v1/users/{id}/role``: ``user.role_changed`` is emitted and the user's tokens are cut off);
    returns the lines to print."""
    import asyncpg

    from accounts import service as accounts
    from accounts.model import Role
    from verseflow.db import create_pool
    from verseflow.errors import DomainError
    from verseflow.redis_client import create_redis

    pool = await create_pool(settings, min_size=1, max_size=2)
    redis = create_redis(settings)
    try:
        if action == "list":
            return [f"{u.email}\t{u.id}\t{u.display_name}" + ("" if u.status == "active" else f"\t({u.status})")
                    for u in await accounts.list_admins(pool)]
        assert email is not None
        if action == "grant":
            user, changed = await accounts.grant_admin(pool, redis, settings, email)
            if not changed:
                return [f"{user.email} is already an administrator"]
            return [f"{user.email} is now an administrator; their current access tokens stopped working, so they "
                    "sign in again (or refresh) to use it"]
        user, changed = await accounts.revoke_admin(pool, redis, settings, email, role=Role(role))
        if not changed:
            return [f"{user.email} is not an administrator ({user.role}); nothing changed"]
        return [f"{user.email} is no longer an administrator (now {user.role}); their current access tokens "
                "stopped working"]
    except asyncpg.UndefinedTableError:
        raise DomainError("the database has no accounts yet: run `verseflow migrate` (or `make up`) first") from None
    finally:
        await redis.aclose()
        await pool.close()


def _admin_parser(sub: argparse._SubParsersAction) -> None:
    admin = sub.add_parser("admin", help="grant, revoke or list administrators (the first one is made here)",
                           description="Administrators are granted by an administrator; the first one, by whoever "
                                       "runs this against the platform's database.")
    actions = admin.add_subparsers(dest="action", required=True)
    grant = actions.add_parser("grant", help="make the account with this e-mail an administrator")
    grant.add_argument("email")
    revoke = actions.add_parser("revoke", help="turn an administrator back into a listener (or --role artist)")
    revoke.add_argument("email")
    revoke.add_argument("--role", choices=["listener", "artist"], default="listener",
                        help="what the account becomes (default: listener)")
    actions.add_parser("list", help="e-mail, id and name of every administrator, tab-separated")
    admin.set_defaults(func=cmd_admin)


# --- verseflow recs: train the recommendation model on demand --------------------------------------


def cmd_recs(args: argparse.Namespace) -> int:
    """Train a new model version as a Ray task (joining the running cluster, else a local Ray) and wait."""
    import ray

    with running_services(get_settings(), redis=False, create=False) as settings:
        version = asyncio.run(_request_version(settings))
        print(f"training recommendation model version {version}", flush=True)
        joined = not ray.is_initialized()
        if joined:
            try:
                ray.init(address="auto", logging_level="ERROR")
            except ConnectionError:
                ray.init(include_dashboard=False, logging_level="ERROR")
        from actors.rec_training import launch

        try:
            stats = ray.get(launch(settings, version))
        except ray.exceptions.RayTaskError as exc:
            print(f"verseflow recs train: version {version} failed: {exc.cause}", file=sys.stderr)
            return 1
        finally:
            if joined:
                ray.shutdown()
    print(f"version {version} ready: {stats['users']} users, {stats['tracks']} tracks, "
          f"{stats['interactions']} interactions in {stats['seconds']} s")
    return 0


async def _request_version(settings: Settings) -> int:
    from ml import training
    from verseflow.db import create_pool

    pool = await create_pool(settings, min_size=1, max_size=1)
    try:
        return await training.request_version(pool, "cli")
    finally:
        await pool.close()


# --- verseflow audio timbre: the timbre of tracks analysed before it existed ---------------------


def cmd_audio(args: argparse.Namespace) -> int:
    """Add the timbre features to published tracks that lack them, in this process (niced like a job)."""
    import os

    try:
        with running_services(get_settings(), redis=False, create=False) as settings:
            os.nice(settings.transcode_niceness)
            done, skipped = asyncio.run(run_timbre_backfill(settings, limit=args.limit))
    except ServicesMissing as exc:
        print(f"verseflow audio timbre: {exc}", file=sys.stderr)
        return 1
    print(f"timbre added to {done} tracks; {skipped} skipped (source missing or undecodable)")
    return 0


async def run_timbre_backfill(settings: Settings, *, limit: int | None = None) -> tuple[int, int]:
    """``audio.service.add_missing_timbre`` against the configured database and object store."""
    from audio import service
    from verseflow.db import create_pool
    from verseflow.storage import object_store

    pool = await create_pool(settings, min_size=1, max_size=1)
    try:
        return await service.add_missing_timbre(pool, object_store(settings),
                                                max_duration_s=settings.track_max_duration_s,
                                                torch_threads=settings.transcode_torch_threads, limit=limit)
    finally:
        await pool.close()


def _audio_parser(sub: argparse._SubParsersAction) -> None:
    audio = sub.add_parser("audio", help="audio pipeline operations")
    actions = audio.add_subparsers(dest="action", required=True)
    backfill = actions.add_parser("timbre", help="measure the timbre features (MFCC, chroma) of published tracks "
                                                 "analysed before they existed, from their stored sources")
    backfill.add_argument("--limit", type=int, default=None, help="at most this many tracks in this run")
    audio.set_defaults(func=cmd_audio)


# --- verseflow royalties: the monthly run ---------------------------------------------------------


def cmd_royalties(args: argparse.Namespace) -> int:
    """Run a month's royalties as a Ray task (joining the running platform's Ray, else a local one)."""
    import ray

    from actors.royalties import run_royalties
    from verseflow.errors import DomainError

    try:
        with running_services(get_settings(), redis=False, create=False) as settings:
            model = args.model or settings.royalty_model
            if settings.ray_address:
                ray.init(address=settings.ray_address, logging_level="WARNING", log_to_driver=False)
            else:
                try:  # the running platform's Ray (make up), else a local one for this command
                    ray.init(address="auto", logging_level="WARNING", log_to_driver=False)
                except ConnectionError:
                    ray.init(include_dashboard=False, logging_level="WARNING", log_to_driver=False)
            try:
                result = ray.get(run_royalties.remote(settings, args.month, model,
                                                      args.currency or settings.billing_currency, args.pool,
                                                      model == settings.royalty_model))
            finally:
                ray.shutdown()
    except (DomainError, ServicesMissing) as exc:
        print(f"verseflow royalties run: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


def _royalties_parser(sub: argparse._SubParsersAction) -> None:
    royalties = sub.add_parser("royalties", help="monthly artist royalty statements")
    actions = royalties.add_subparsers(dest="action", required=True)
    run = actions.add_parser("run", help="compute a month's statements (idempotent: a re-run changes nothing)")
    run.add_argument("--month", required=True, help="YYYY-MM")
    run.add_argument("--model", choices=["pro_rata", "user_centric", "artist_centric"],
                     help="default VERSEFLOW_ROYALTY_MODEL; only that model's run is booked in the ledger")
    run.add_argument("--currency", help="default VERSEFLOW_BILLING_CURRENCY")
    run.add_argument("--pool", type=int, help="pool in minor units (default: the revenue share from the ledger)")
    royalties.set_defaults(func=cmd_royalties)


def cmd_dashboards(args: argparse.Namespace) -> int:
    """Push the dashboards defined in ``ops/dashboards.py`` (and Ray's own) to a Grafana, idempotently."""
    from grafana_client.client import GrafanaException

    from ops import grafana
    from ops.dashboards import all_dashboards

    dashboards = [d.json() for d in all_dashboards()]
    if not args.no_ray:
        dashboards += grafana.ray_dashboards(Path(args.ray_dashboards))
    try:
        pushed = grafana.push(grafana.connect(args.grafana_url), dashboards, folder_uid=args.folder)
    except (GrafanaException, OSError) as exc:
        print(f"verseflow dashboards push: {exc}", file=sys.stderr)
        return 1
    for result in pushed:
        print(f"{result.action}\t{result.uid}\tversion {result.version}\t{result.title}")
    return 0


def _dashboards_parser(sub: argparse._SubParsersAction) -> None:
    dashboards = sub.add_parser("dashboards", help="Grafana dashboards as code (ops/dashboards.py)")
    actions = dashboards.add_subparsers(dest="action", required=True)
    push = actions.add_parser("push", help="create or update them in a Grafana (token: VERSEFLOW_GRAFANA_TOKEN)")
    push.add_argument("--grafana-url", required=True, help="e.g. http://grafana:3000 (or http://user:pass@host:3000)")
    push.add_argument("--folder", default="verseflow", help="folder uid (made if missing)")
    push.add_argument("--ray-dashboards", default=str(Path("/tmp/ray/session_latest/metrics/grafana/dashboards")),
                      help="where Ray wrote its own dashboards (pushed beside ours when present)")
    push.add_argument("--no-ray", action="store_true", help="push only VerseFlow's dashboards")
    dashboards.set_defaults(func=cmd_dashboards)


# --- entry point ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="verseflow", description="Run and operate VerseFlow.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="run the platform locally (embedded PostgreSQL/Redis unless URLs are set)") \
        .set_defaults(func=cmd_up)
    sub.add_parser("migrate", help="apply pending database migrations").set_defaults(func=cmd_migrate)
    status = sub.add_parser("status", help="ask the running platform whether it is ready")
    status.add_argument("--timeout", type=float, default=5.0)
    status.set_defaults(func=cmd_status)
    _admin_parser(sub)
    recs = sub.add_parser("recs", help="recommendation model operations")
    recs_actions = recs.add_subparsers(dest="action", required=True)
    recs_actions.add_parser("train", help="train a new model version now (a Ray task) and wait for it")
    recs.set_defaults(func=cmd_recs)
    _royalties_parser(sub)
    _audio_parser(sub)
    _dashboards_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
