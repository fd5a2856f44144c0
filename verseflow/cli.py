"""The ``verseflow`` command: ``up``, ``migrate``, ``status``.

Subcommands stay thin: each calls into the launcher or the kernel. New capabilities (workers,
imports, admin tasks) add a subcommand here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.request

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


def cmd_migrate(_: argparse.Namespace) -> int:
    settings = get_settings()
    embedded = None
    if not settings.database_url:
        from verseflow.embedded import EmbeddedPostgres

        embedded = EmbeddedPostgres(settings.var_dir / "postgres")
        settings = settings.model_copy(update={"database_url": embedded.start(), "redis_url": "unused://"})
    try:
        applied = asyncio.run(run_migrations(settings))
        print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    finally:
        if embedded:
            embedded.stop()
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="verseflow", description="Run and operate VerseFlow.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="run the platform locally (embedded PostgreSQL/Redis unless URLs are set)") \
        .set_defaults(func=cmd_up)
    sub.add_parser("migrate", help="apply pending database migrations").set_defaults(func=cmd_migrate)
    status = sub.add_parser("status", help="ask the running platform whether it is ready")
    status.add_argument("--timeout", type=float, default=5.0)
    status.set_defaults(func=cmd_status)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
