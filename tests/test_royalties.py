"""Royalty statements (billing/royalties.py): the three models on fixtures with known answers, exact
sums by largest remainder, qualifying plays, idempotent runs, the ledger entry, the statements route."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime

import pytest

from billing import ledger, royalties
from billing.royalties import Streams


def test_pro_rata_largest_remainder_known_answer():
    streams = [Streams("u1", "A", "X", 3), Streams("u2", "B", "Y", 3), Streams("u2", "C", "Y", 1)]
    lines = royalties.compute("pro_rata", 1000, streams)
    # 1000 × 3/7 = 428.57, 428.57, 142.86: floors 998, the two cents go to C (.86) then A (tie with B, smaller id)
    assert [(line.track_id, line.amount) for line in lines] == [("A", 429), ("B", 428), ("C", 143)]


def test_user_centric_known_answer_money_follows_each_users_listening():
    streams = [Streams("u1", "A", "X", 2), Streams("u1", "B", "Y", 1), Streams("u2", "C", "Y", 1)]
    contributions = {"u1": 600, "u2": 400, "u4": 100}  # u4 paid and streamed nothing: split pro-rata
    lines = royalties.compute("user_centric", 1100, streams, contributions)
    assert [(line.track_id, line.amount) for line in lines] == [("A", 450), ("B", 225), ("C", 425)]
    with pytest.raises(royalties.InvalidInput):
        royalties.compute("user_centric", 1000, streams, contributions)


def test_artist_centric_known_answer_boost_and_user_cap():
    # X: 1,000 streams from 500 listeners → boosted ×2. Y: one listener with 2,000 streams → capped at 1,000.
    streams = [Streams(f"fan{i}", "A", "X", 2) for i in range(500)] + [Streams("heavy", "B", "Y", 2000)]
    lines = royalties.compute("artist_centric", 3000, streams)
    assert [(line.track_id, line.streams, line.amount) for line in lines] == [("A", 1000, 2000), ("B", 2000, 1000)]
    # one listener fewer and X is no longer boosted: 998 vs 1000
    lines = royalties.compute("artist_centric", 1998, streams[1:])
    assert [(line.track_id, line.amount) for line in lines] == [("A", 998), ("B", 1000)]


@pytest.mark.parametrize("model", royalties.MODELS)
def test_every_model_pays_exactly_the_pool_on_random_months(model):
    rng = random.Random(7)
    for _ in range(30):
        users = [f"u{i}" for i in range(rng.randint(1, 40))]
        streams = [Streams(rng.choice(users), f"t{rng.randint(0, 25)}", f"a{rng.randint(0, 6)}", rng.randint(1, 400))
                   for _ in range(rng.randint(1, 120))]
        pool = rng.randint(0, 10_000_000)
        contributions = None
        if model == "user_centric":
            payers = sorted(set(users))
            contributions = dict(zip(payers, royalties.apportion(pool, [rng.randint(1, 9) for _ in payers], payers),
                                     strict=True))
        lines = royalties.compute(model, pool, streams, contributions)
        assert sum(line.amount for line in lines) == (pool if lines or pool == 0 else 0)
        assert all(line.amount >= 0 for line in lines)


async def _catalog(pool, n_tracks: int) -> tuple[uuid.UUID, uuid.UUID, list[uuid.UUID]]:
    owner, artist = uuid.uuid4(), uuid.uuid4()
    await pool.execute("INSERT INTO users (id, email, password_hash, display_name, role) VALUES ($1, $2, 'x', 'o',"
                       " 'artist')", owner, f"royal-{owner.hex[:8]}@example.com")
    await pool.execute("INSERT INTO artists (id, owner_id, name) VALUES ($1, $2, 'Royal')", artist, owner)
    tracks = [uuid.uuid4() for _ in range(n_tracks)]
    for index, track in enumerate(tracks):
        await pool.execute("INSERT INTO tracks (id, artist_id, title) VALUES ($1, $2, $3)", track, artist,
                           f"Song {index}")
    return owner, artist, tracks


async def _listener(pool) -> uuid.UUID:
    user = uuid.uuid4()
    await pool.execute("INSERT INTO users (id, email, password_hash, display_name, role) VALUES ($1, $2, 'x', 'l',"
                       " 'listener')", user, f"fan-{user.hex[:8]}@example.com")
    return user


async def _play(pool, user, track, at, events: list[tuple[str, int]]):
    play_id = uuid.uuid4()
    for event, position in events:
        await pool.execute("INSERT INTO plays (play_id, user_id, track_id, event, position_ms, created_at)"
                           " VALUES ($1, $2, $3, $4, $5, $6)", play_id, user, track, event, position, at)


async def test_a_month_run_counts_qualifying_plays_is_idempotent_books_and_serves_statements(pool, api, client):
    month = "2031-04"  # a month no other test plays in
    at = datetime(2031, 4, 10, tzinfo=UTC)
    owner, artist, (song_a, song_b) = await _catalog(pool, 2)
    fan = await _listener(pool)
    await _play(pool, fan, song_a, at, [("start", 0), ("complete", 180_000)])
    await _play(pool, fan, song_a, at, [("start", 0), ("progress", 30_000)])          # 30 s: counts
    await _play(pool, fan, song_b, at, [("start", 0), ("progress", 29_999)])          # 29.999 s: does not
    await _play(pool, fan, song_b, at, [("start", 0), ("progress", 40_000), ("complete", 200_000)])  # one stream
    await _play(pool, fan, song_b, datetime(2031, 5, 1, tzinfo=UTC), [("complete", 200_000)])       # next month
    async with pool.acquire() as conn:
        found = {(s.track_id, s.count) for s in await royalties.qualifying_streams(conn, month)}
    assert found == {(str(song_a), 2), (str(song_b), 1)}

    first = await royalties.run_month(pool, month=month, model="pro_rata", currency="eur", share_bp=7000,
                                      pool_override=1001)
    again = await royalties.run_month(pool, month=month, model="pro_rata", currency="eur", share_bp=7000,
                                      pool_override=5)
    assert first.created and not again.created and again.run_id == first.run_id and again.pool == 1001
    async with pool.acquire() as conn:
        assert await ledger.balance(conn, ledger.royalties_payable(artist), "eur") == -1001
        assert (await ledger.trial_balance(conn)).get("eur", 0) == 0

    owner_user = await api.user("artist")
    await pool.execute("UPDATE artists SET owner_id = $1 WHERE id = $2", uuid.UUID(owner_user["id"]), artist)
    answer = await client.get(f"/v1/artists/{artist}/statements", headers=owner_user["headers"])
    assert answer.status_code == 200, answer.text
    (statement,) = answer.json()
    assert statement["month"] == month and statement["total"] == 1001
    assert sorted((line["title"], line["streams"], line["amount"]) for line in statement["lines"]) == [
        ("Song 0", 2, 667), ("Song 1", 1, 334)]
    csv_answer = await client.get(f"/v1/artists/{artist}/statements?format=csv", headers=owner_user["headers"])
    assert csv_answer.headers["content-type"].startswith("text/csv")
    assert csv_answer.text.splitlines()[0] == "month,model,currency,track_id,title,streams,amount_minor"
    assert len(csv_answer.text.splitlines()) == 3
    stranger = await api.user("listener")
    assert (await client.get(f"/v1/artists/{artist}/statements", headers=stranger["headers"])).status_code == 403


async def test_the_run_as_a_ray_task_under_every_model(pool, settings, ray_cluster):
    import ray

    from actors.royalties import run_royalties

    month = "2031-06"
    _, artist, (song,) = await _catalog(pool, 1)
    fan = await _listener(pool)
    await _play(pool, fan, song, datetime(2031, 6, 3, tzinfo=UTC), [("complete", 100_000)])
    results = ray.get([run_royalties.remote(settings, month, model, "eur", 777, False) for model in royalties.MODELS])
    assert [(r["model"], r["pool"], r["lines"], r["created"]) for r in results] == [
        (model, 777, 1, True) for model in royalties.MODELS]
    async with pool.acquire() as conn:
        assert await ledger.balance(conn, ledger.royalties_payable(artist), "eur") == 0  # not the booked model


async def test_a_play_counts_once_in_the_month_it_first_qualified(pool):
    """The plays trigger (0026): a play across a month's end counts in the month it reached 30 s; its later
    events, sent one by one or again, never count it a second time."""
    _, _, (song,) = await _catalog(pool, 1)
    fan = await _listener(pool)
    play_id = uuid.uuid4()
    events = [("start", 0, datetime(2031, 7, 31, 23, 58, tzinfo=UTC)),
              ("progress", 45_000, datetime(2031, 7, 31, 23, 59, tzinfo=UTC)),
              ("complete", 200_000, datetime(2031, 8, 1, 0, 1, tzinfo=UTC))]
    for event, position, at in events + events[1:]:  # each event in its own statement, then sent again
        await pool.execute("INSERT INTO plays (play_id, user_id, track_id, event, position_ms, created_at)"
                           " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                           play_id, fan, song, event, position, at)
    async with pool.acquire() as conn:
        july = {(s.track_id, s.count) for s in await royalties.qualifying_streams(conn, "2031-07")}
        august = list(await royalties.qualifying_streams(conn, "2031-08"))
    assert july == {(str(song), 1)} and august == []


async def test_plays_inserted_in_bulk_are_counted_per_play(pool):
    _, _, (song_a, song_b) = await _catalog(pool, 2)
    fans = [await _listener(pool) for _ in range(3)]
    rows = []
    for index, fan in enumerate(fans):
        for _ in range(index + 1):  # fan 0: one play of each song, fan 1: two, fan 2: three
            for song in (song_a, song_b):
                play_id = uuid.uuid4()
                rows += [(play_id, fan, song, "start", 0, datetime(2031, 9, 5, tzinfo=UTC)),
                         (play_id, fan, song, "complete", 180_000, datetime(2031, 9, 5, 0, 3, tzinfo=UTC))]
    rows.append((uuid.uuid4(), fans[0], song_a, "progress", 29_999, datetime(2031, 9, 6, tzinfo=UTC)))  # too short
    await pool.copy_records_to_table("plays", records=rows,
                                     columns=["play_id", "user_id", "track_id", "event", "position_ms", "created_at"])
    async with pool.acquire() as conn:
        found = sorted((s.user_id, s.track_id, s.count) for s in await royalties.qualifying_streams(conn, "2031-09"))
    assert found == sorted((str(fan), str(song), index + 1) for index, fan in enumerate(fans)
                           for song in (song_a, song_b))


async def test_pruning_forgets_old_months_counted_plays_but_keeps_their_counts(pool, settings):
    _, _, (song,) = await _catalog(pool, 1)
    fan = await _listener(pool)
    now = datetime.now(UTC)
    old, recent = datetime(2020, 1, 15, tzinfo=UTC), now
    for at in (old, recent):
        await _play(pool, fan, song, at, [("complete", 180_000)])
    assert await royalties.prune_qualified_plays(pool, settings) >= 1
    kept = await pool.fetch("SELECT month FROM qualified_plays WHERE user_id = $1", fan)
    assert [r["month"] for r in kept] == [date(now.year, now.month, 1)]  # this month's play is still remembered
    async with pool.acquire() as conn:
        assert [(s.track_id, s.count) for s in await royalties.qualifying_streams(conn, "2020-01")] == [(str(song), 1)]


async def _users(pool, n: int) -> list[uuid.UUID]:
    users = [uuid.uuid4() for _ in range(n)]
    await pool.executemany("INSERT INTO users (id, email, password_hash, display_name, role) VALUES ($1, $2, 'x', 'l',"
                           " 'listener')", [(u, f"agg-{u.hex[:12]}@example.com") for u in users])
    return users


async def test_the_run_sums_in_the_database_as_compute_does_in_memory(pool):
    """compute_in_database (what run_month uses: per-track and per-listener sums taken by PostgreSQL) gives
    the same lines as compute over the month's rows, for every model, on a month built to reach each
    branch: an artist boosted by one track's listeners, one boosted only when its tracks' listeners are
    counted together, one whose tracks share their listeners (not boosted, though its per-track
    listeners add up to 900), and two heavy listeners over the per-user cap."""
    month, day = "2032-03", date(2032, 3, 1)
    fans = await _users(pool, 700)
    heavy = fans[650:652]  # in no other artist's audience: their month is 2,000 and 4,000 streams
    catalog = {name: await _catalog(pool, 3) for name in "ABCD"}
    rows = [(fan, catalog["A"][2][0], 2) for fan in fans[:600]]                      # 600 listeners on one track
    rows += [(fan, catalog["B"][2][i], 2) for i in range(3) for fan in fans[200 * i + 50:200 * i + 250]]  # 600
    rows += [(fan, track, 2) for track in catalog["C"][2] for fan in fans[300:600]]  # the same 300 on each
    rows += [(heavy[0], catalog["D"][2][0], 1500), (heavy[0], catalog["D"][2][1], 500)]  # 2,000 + what's above
    rows += [(heavy[1], catalog["D"][2][2], 4000)]
    streams: dict[tuple[uuid.UUID, uuid.UUID], int] = {}
    for fan, track, n in rows:
        streams[(fan, track)] = streams.get((fan, track), 0) + n
    await pool.executemany("INSERT INTO monthly_streams (month, user_id, track_id, streams) VALUES ($1, $2, $3, $4)",
                           [(day, fan, track, n) for (fan, track), n in streams.items()])
    payers = sorted(str(f) for f in fans[:400:3]) + [str(uuid.uuid4())]  # one paid and streamed nothing
    contributions = dict(zip(payers, royalties.apportion(987_654, list(range(1, len(payers) + 1)), payers),
                             strict=True))
    async with pool.acquire() as conn:
        table = await royalties.qualifying_streams(conn, month)
        for model in royalties.MODELS:
            given = contributions if model == "user_centric" else None
            in_db = await royalties.compute_in_database(conn, model, 987_654, month, given)
            assert in_db == royalties.compute(model, 987_654, table, given), model
            assert sum(line.amount for line in in_db) == 987_654
        boosted = await royalties.compute_in_database(conn, "artist_centric", 987_654, month)
    per_artist: dict[str, int] = {}
    for line in boosted:
        per_artist[line.artist_id] = per_artist.get(line.artist_id, 0) + line.amount
    weight = {"A": 2 * 1200, "B": 2 * 1200, "C": 1800, "D": 2000 * 1000 // 2000 + 1000}  # heavy: capped at 1,000 each
    total = sum(weight.values())
    for name, (_, artist, _) in catalog.items():
        assert abs(per_artist[str(artist)] - 987_654 * weight[name] / total) < 3, name
