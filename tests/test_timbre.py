"""Timbre features (``audio/timbre.py``): MFCC and chroma on signals whose answer is known, the field the
pipeline stores, the content vector's block for tracks with and without it, and the backfill of old tracks
from their stored sources (real PostgreSQL and object store)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import numpy as np
import pytest

from accounts import service as accounts
from accounts.model import Principal, Role
from audio import service, timbre
from audio.decode import AudioInfo, DecodedAudio, decode
from audio.pipeline import analyse, timbre_of
from audio.synthetic import SongSpec, render
from catalog import artists, tracks
from ml import collaborative, content, sound_catalogue
from tests.audio_fixtures import write_audio
from verseflow import migrations
from verseflow.db import create_pool
from verseflow.settings import Settings
from verseflow.storage import object_store

RATE = timbre.RATE
A4, C4, E4, G4 = 440.0, 261.626, 329.628, 391.995


def tone(*freqs: float, seconds: float = 6.0, rate: int = RATE, level: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (level * sum(np.sin(2 * np.pi * f * t) for f in freqs) / len(freqs)).astype(np.float32)


def chroma_mean(features: timbre.Timbre) -> np.ndarray:
    return np.asarray(features.values[timbre.CHROMA_MEAN])


def strongest(features: timbre.Timbre, count: int) -> set[str]:
    order = np.argsort(-chroma_mean(features))
    return {timbre.PITCH_CLASSES[i] for i in order[:count]}


def test_a_pure_a4_peaks_at_pitch_class_a():
    features = timbre.compute(tone(A4))
    assert features.model == timbre.MODEL and len(features.values) == timbre.DIMENSIONS
    chroma = chroma_mean(features)
    assert timbre.PITCH_CLASSES[int(np.argmax(chroma))] == "A"
    assert chroma.max() == pytest.approx(1.0, abs=1e-3)           # every frame's largest class is A
    neighbours = np.delete(chroma, timbre.PITCH_CLASSES.index("A"))
    assert neighbours.max() < 0.35                                # G# and A# get only the bin's spread


def test_a_c_major_triad_peaks_at_c_e_and_g():
    assert strongest(timbre.compute(tone(C4, E4, G4)), 3) == {"C", "E", "G"}
    # An octave lower, each note with five harmonics at 1/h (the 3rd is a fifth up, the 5th a major third):
    # their G, B, D, G# and E stay below the chord's own three classes.
    rich = sum(tone(*(f / 2 * h for f in (C4, E4, G4)), level=0.3 / h) for h in range(1, 6))
    assert strongest(timbre.compute(rich), 3) == {"C", "E", "G"}


def test_a_chord_moves_with_its_key():
    up = 2 ** (2 / 12)   # D major: D, F#, A
    assert strongest(timbre.compute(tone(C4 * up, E4 * up, G4 * up)), 3) == {"D", "F#", "A"}


def test_white_noise_has_no_pitch_class():
    noise = np.random.default_rng(3).normal(scale=0.1, size=6 * RATE).astype(np.float32)
    chroma = chroma_mean(timbre.compute(noise))
    assert chroma.min() > 0.6 * chroma.max()


def test_mfcc_are_deterministic_ignore_the_level_and_tell_noise_from_music():
    signal = render(SongSpec(seed=5, seconds=12.0, bpm=110, tonic="E", mode="minor"), 44100).mean(axis=0)
    first = timbre.compute(signal, 44100)
    assert timbre.compute(signal, 44100) == first
    quieter = np.asarray(timbre.compute(signal * 0.1, 44100).values)
    assert np.allclose(quieter, first.values, atol=1e-3)           # the level is loudness's, not timbre's
    noise = np.random.default_rng(4).normal(scale=0.1, size=12 * 44100)
    mfcc = slice(0, 2 * timbre.N_MFCC)
    assert np.linalg.norm(np.asarray(timbre.compute(noise, 44100).values)[mfcc] - np.asarray(first.values)[mfcc]) > 10


def test_silence_and_too_little_audio_give_an_empty_vector():
    assert timbre.compute(np.zeros(10 * RATE, dtype=np.float32)).values == ()
    assert timbre.compute(tone(A4, seconds=2.0)).values == ()
    assert timbre.compute(np.zeros((2, 8 * RATE), dtype=np.float32)).to_json() == {"model": timbre.MODEL, "values": []}
    with pytest.raises(ValueError):
        timbre.compute(tone(A4), 0)


def test_torch_threads_are_set_by_the_caller():
    import torch

    before = torch.get_num_threads()
    try:
        timbre.compute(tone(A4), threads=1)
        assert torch.get_num_threads() == 1
        timbre.compute(tone(A4), threads=2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_readers_of_stored_analyses_never_import_torch():
    code = ("import sys, ml.content, ml.recommend, audio.pipeline, audio.service; "
            "ml.content.content_vector({'embedding': {'values': [1.0]}}); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[1])
    assert out.stdout.strip() == "False"


def decoded(samples: np.ndarray, rate: int) -> DecodedAudio:
    info = AudioInfo(container="synthetic", codec="pcm", rate=rate, channels=samples.shape[0],
                     duration_s=samples.shape[1] / rate, bit_rate=None)
    return DecodedAudio(samples=samples.astype(np.float32), rate=rate, info=info)


def test_the_analysis_stores_the_timbre_and_the_content_vector_reads_it():
    audio = decoded(render(SongSpec(seed=9, seconds=15.0, bpm=124, tonic="G", mode="major"), 44100), 44100)
    analysis = analyse(audio, timbre_features=True)
    stored = analysis["timbre"]
    assert stored["model"] == timbre.MODEL and len(stored["values"]) == timbre.DIMENSIONS
    assert stored == timbre_of(audio)                               # what the backfill would store
    vector = content.content_vector(analysis)
    assert vector[-1] == 1.0 and np.allclose(vector[-content.TIMBRE_BLOCK:-1], stored["values"], atol=1e-6)

    # Analysed before timbre-v1, silent, or under another model: the same length, block zero, flag 0.
    for old in ({k: v for k, v in analysis.items() if k != "timbre"},
                analysis | {"timbre": {"model": timbre.MODEL, "values": []}},
                analysis | {"timbre": {"model": "timbre-v0", "values": stored["values"]}}):
        fallback = content.content_vector(old)
        assert len(fallback) == len(vector) and not fallback[-content.TIMBRE_BLOCK:].any()
        assert np.array_equal(fallback[:-content.TIMBRE_BLOCK], vector[:-content.TIMBRE_BLOCK])


def test_tracks_with_and_without_timbre_share_one_content_model(settings):
    """Half the catalogue analysed before timbre-v1: every track stays in the content model (vectors of
    different lengths would split it: ``_with_content`` keeps one length), cold ones of both kinds get a
    vector from their sound. How well they are placed is measured, not asserted: ``bench/recs.py`` cold start
    (a tiny two-factor model places one style's cold tracks poorly with or without timbre)."""
    styles = ("ambient", "drum and bass")
    analyses = {s: [sound_catalogue.analysed_clip(s, 71_000 + i, seconds=6.0) for i in range(7)] for s in styles}
    sounds = {f"{s}{i}": content.content_vector({k: v for k, v in a.items() if k != "timbre"} if i % 2 else a)
              for s in styles for i, a in enumerate(analyses[s])}
    assert len({len(v) for v in sounds.values()}) == 1
    entries = [(f"{s}-fan{u}", f"{s}{i}", 10.0) for s in styles for u in range(4) for i in range(5)]
    model = collaborative.train(entries, settings, version=1, content=sounds)
    assert model.content_map is not None and model.content_map.dimensions == len(sounds["ambient0"])
    assert set(model.track_ids) == set(sounds)
    for s in styles:
        for cold in (f"{s}5", f"{s}6"):          # one analysed without timbre, one with
            index = model.track_index[cold]
            assert model.is_cold(index) and np.all(np.isfinite(model.item_factors[index]))
            assert np.linalg.norm(model.item_factors[index]) > 0


@pytest.fixture
async def own_database(settings) -> AsyncIterator[tuple[asyncpg.Pool, Settings]]:
    """A migrated database of its own: the backfill selects every track lacking timbre, and the shared
    test database holds other tests' tracks, published without it (``transcode_timbre`` is off)."""
    name = f"vf_timbre_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(settings.database_url)
    await admin.execute(f"CREATE DATABASE {name}")
    own = settings.model_copy(update={"database_url": settings.database_url.rsplit("/", 1)[0] + "/" + name})
    try:
        conn = await asyncpg.connect(own.database_url)
        try:
            await migrations.migrate(conn)
        finally:
            await conn.close()
        pool = await create_pool(own)
        try:
            yield pool, own
        finally:
            await pool.close()
    finally:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


async def test_old_tracks_get_their_timbre_from_the_stored_source(own_database, tmp_path):
    from verseflow.cli import run_timbre_backfill

    pool, settings = own_database
    store = object_store(settings)
    user = await accounts.register(pool, settings, email=f"timbre-{uuid.uuid4().hex[:8]}@example.com",
                                   password="correct horse battery", display_name="Timbre", role=Role.ARTIST)
    owner = Principal(user.id, Role.ARTIST)
    artist = await artists.create_artist(pool, owner, name=f"timbre {uuid.uuid4().hex[:6]}")
    samples = render(SongSpec(seed=12, seconds=12.0, bpm=100, tonic="D", mode="minor"), 44100)
    path = write_audio(tmp_path / "old.flac", samples, 44100)
    before = analyse(decode(path, max_duration_s=60.0))   # as published with the timbre features off
    made = []
    for title, with_source in (("old", True), ("source gone", False)):   # as published before timbre-v1
        track = await tracks.create_track(pool, owner, title=title, artist_id=artist["id"], duration_s=12.0,
                                          status="ready")
        key = service.source_key(track["id"])
        if with_source:
            store.put_file(key, path)
        await pool.execute("UPDATE tracks SET analysis = $2, source_key = $3 WHERE id = $1",
                           track["id"], before, key)
        made.append(track["id"])

    assert await service.add_missing_timbre(pool, store, max_duration_s=60.0, torch_threads=1) == (1, 1)
    stored = await pool.fetchval("SELECT analysis FROM tracks WHERE id = $1", made[0])
    assert stored["timbre"] == timbre_of(decode(path, max_duration_s=60.0))
    assert {k: v for k, v in stored.items() if k != "timbre"} == before   # the rest of the analysis is untouched
    assert "timbre" not in await pool.fetchval("SELECT analysis FROM tracks WHERE id = $1", made[1])
    # Done once: the command (`verseflow audio timbre`) measures nothing again and still skips the other.
    assert await run_timbre_backfill(settings, limit=5) == (0, 1)
