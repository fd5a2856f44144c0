"""Synthetic, labelled music for the placeholder genre classifier (``audio/genre.py``).

Why: the audio pipeline reports a genre per track, but there is no licensed music dataset on the
build machines (and no internet to fetch one). Until one (e.g. FMA) is available, the classifier is
trained on music rendered here. It can therefore only learn the *archetypes* below, the coarse
traits a listener would name first; it knows nothing about real recordings, vocals, production
eras or the many genres that are not listed.

The archetypes (``STYLES``) and the traits that define them:

* ``electronic`` (house): four-on-the-floor kick at 118-130 BPM, off-beat open hats, clap on 2 and 4,
  off-beat saw bass, filtered saw-chord stabs, often side-chain "pumping".
* ``hip hop`` (boom-bap): 80-98 BPM, kick/snare boom-bap patterns with swung 16th hats, long sine
  sub bass (808-like), a mellow electric-piano loop, optional vinyl crackle.
* ``rock``: 100-150 BPM backbeat (kick 1 and 3, snare 2 and 4), 8th-note hats or ride, crashes on
  bar lines, distorted power chords (root, fifth, octave through a tanh "amp" and cabinet low-pass)
  and a plucked bass guitar on the roots.
* ``ambient``: no drums; detuned saw/sine pads with slow attacks changing every 4-10 s, sparse
  inharmonic bells, a long (2-6 s) reverb tail, a soft noise bed.
* ``classical`` (acoustic chamber music): no drums; a melody and broken-chord accompaniment played
  with additive plucked (guitar/harp), bowed (strings, with vibrato) or piano-like timbres, rubato
  tempo 60-120 BPM, a small room reverb.
* ``drum and bass``: 160-180 BPM breakbeats (syncopated kick, snare on 2 and 4, ghost notes, 16th
  hats), a detuned "reese" saw bass, an optional pad.

Everything random (key, mode, chord progression, tempo, drum and synth timbres, pattern variations,
mix levels, the recording chain (EQ tilt, band limits, saturation, background noise at 10-60 dB SNR),
level, the phase at which the clip starts) is drawn from
``numpy.random.default_rng([style index, seed])``, so a (style, seed) pair always renders the same
clip and different seeds give the classifier many variants of each style rather than one sound.
Seed ranges: ``TRAIN_SEEDS`` and ``VALIDATION_SEEDS`` are used by ``ml/train_genre.py``; seeds from
``TEST_SEED_START`` on are never used in training and are kept for the tests.

Output: mono float32 in [-1, 1] at ``rate`` (22050 Hz by default; any rate works).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import signal

STYLES = ("electronic", "hip hop", "rock", "ambient", "classical", "drum and bass")
RATE = 22050
CLIP_SECONDS = 10.0
TRAIN_SEEDS = range(0, 110)
VALIDATION_SEEDS = range(10_000, 10_040)
TEST_SEED_START = 20_000

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
PROGRESSIONS = ((0, 5, 3, 4), (0, 3, 4, 0), (0, 4, 5, 3), (5, 3, 0, 4), (0, 0, 3, 4), (0, 6, 5, 4), (1, 4, 0, 0))

Rng = np.random.Generator


# --- primitives ----------------------------------------------------------------------------------


def midi_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69.0) / 12.0)


def _times(seconds: float, rate: int) -> np.ndarray:
    return np.arange(max(1, round(seconds * rate))) / rate


def _place(out: np.ndarray, sound: np.ndarray, at_seconds: float, rate: int, gain: float = 1.0) -> None:
    """Add ``sound`` into ``out`` starting at ``at_seconds`` (clipped at both ends)."""
    start = round(at_seconds * rate)
    first = max(0, -start)
    end = min(len(out), start + len(sound))
    if end > start + first:
        out[start + first : end] += gain * sound[first : end - start]


def _filtered(x: np.ndarray, kind: str, hz: float | tuple[float, float], rate: int, order: int = 2) -> np.ndarray:
    nyquist = rate / 2.0
    edges = np.clip(np.atleast_1d(np.asarray(hz, dtype=float)), 20.0, nyquist * 0.95)
    wn = edges[0] if edges.size == 1 else edges
    return signal.sosfilt(signal.butter(order, wn, kind, fs=rate, output="sos"), x)


def _saw(freq: float, t: np.ndarray, phase: float = 0.0) -> np.ndarray:
    return 2.0 * ((freq * t + phase) % 1.0) - 1.0


def _detuned_saws(freq: float, t: np.ndarray, voices: int, cents: float, rng: Rng) -> np.ndarray:
    spread = np.linspace(-cents, cents, voices) if voices > 1 else np.zeros(1)
    return sum(_saw(freq * 2.0 ** (c / 1200.0), t, rng.uniform()) for c in spread) / voices


def _envelope(n: int, rate: int, attack: float, release: float) -> np.ndarray:
    """Linear attack, flat sustain, linear release over ``n`` samples."""
    env = np.ones(n)
    a, r = min(n, max(1, round(attack * rate))), min(n, max(1, round(release * rate)))
    env[:a] = np.linspace(0.0, 1.0, a)
    env[n - r :] *= np.linspace(1.0, 0.0, r)
    return env


def _reverb(x: np.ndarray, rate: int, seconds: float, wet: float, rng: Rng) -> np.ndarray:
    """Convolution with exponentially decaying, low-passed noise (RT60 = ``seconds``)."""
    t = _times(seconds, rate)
    impulse = rng.standard_normal(len(t)) * np.exp(-6.9 * t / seconds)
    impulse = _filtered(impulse, "lowpass", rng.uniform(2500, 7000), rate)
    impulse /= np.sqrt(np.sum(impulse**2)) + 1e-12
    tail = signal.fftconvolve(x, impulse)[: len(x)]
    return (1.0 - wet) * x + wet * tail * (np.std(x) / (np.std(tail) + 1e-12))


def _chord(key: int, scale: tuple[int, ...], degree: int, base: int, size: int = 3) -> list[int]:
    notes = []
    for i in range(size):
        step = degree + 2 * i
        notes.append(base + key + scale[step % 7] + 12 * (step // 7))
    return notes


def _harmony(rng: Rng) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    key = int(rng.integers(0, 12))
    scale = MAJOR if rng.uniform() < 0.5 else MINOR
    progression = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    return key, scale, progression


# --- drums ---------------------------------------------------------------------------------------


def _kick(rate: int, rng: Rng, *, decay: tuple[float, float] = (0.12, 0.3),
          low: tuple[float, float] = (42, 60)) -> np.ndarray:
    d = rng.uniform(*decay)
    t = _times(d * 5.0, rate)
    f_end, f_start, sweep = rng.uniform(*low), rng.uniform(110, 190), rng.uniform(0.015, 0.05)
    freq = f_end + (f_start - f_end) * np.exp(-t / sweep)
    body = np.sin(2 * np.pi * np.cumsum(freq) / rate) * np.exp(-t / d)
    click = rng.standard_normal(len(t)) * np.exp(-t / 0.004) * rng.uniform(0.05, 0.3)
    return body + _filtered(click, "highpass", 1500.0, rate)


def _snare(rate: int, rng: Rng) -> np.ndarray:
    d = rng.uniform(0.07, 0.2)
    t = _times(d * 5.0, rate)
    noise = _filtered(rng.standard_normal(len(t)), "bandpass", (rng.uniform(800, 2000), rng.uniform(5000, 9000)), rate)
    tone = np.sin(2 * np.pi * rng.uniform(160, 240) * t) * np.exp(-t / rng.uniform(0.03, 0.08))
    mix = rng.uniform(0.4, 0.8)
    return mix * noise * np.exp(-t / d) / (np.std(noise) * 3 + 1e-9) + (1 - mix) * tone


def _clap(rate: int, rng: Rng) -> np.ndarray:
    t = _times(0.4, rate)
    noise = _filtered(rng.standard_normal(len(t)), "bandpass", (rng.uniform(800, 1300), rng.uniform(2500, 4500)), rate)
    env = np.exp(-t / rng.uniform(0.06, 0.14))
    for burst in (0.0, 0.011, 0.022):
        env += 0.8 * np.exp(-np.clip(t - burst, 0, None) / 0.004) * (t >= burst)
    return noise * env / (np.std(noise) * 4 + 1e-9)


def _hat(rate: int, rng: Rng, decay: float) -> np.ndarray:
    t = _times(decay * 5.0, rate)
    noise = _filtered(rng.standard_normal(len(t)), "highpass", rng.uniform(5000, 8500), rate, order=4)
    return noise * np.exp(-t / decay) / (np.std(noise) * 3 + 1e-9)


def _cymbal(rate: int, rng: Rng, seconds: float) -> np.ndarray:
    t = _times(seconds, rate)
    metal = sum(np.sign(np.sin(2 * np.pi * f * t)) for f in rng.uniform(300, 900, 6)) / 6
    noise = rng.standard_normal(len(t)) + 0.5 * metal
    return _filtered(noise, "highpass", rng.uniform(3000, 6000), rate) * np.exp(-t / (seconds / 4)) * 0.3


def _drum_grid(out: np.ndarray, rate: int, hits: list[tuple[float, np.ndarray, float]], rng: Rng) -> None:
    for at, sound, gain in hits:
        _place(out, sound, at, rate, gain * rng.uniform(0.85, 1.0))


def _steps(seconds: float, bpm: float, rng: Rng, swing: float = 0.5) -> list[tuple[int, float]]:
    """(16th-note index within a bar, time) for every 16th in the clip, starting at a random phase."""
    step = 60.0 / bpm / 4.0
    offset = -rng.uniform(0.0, 16 * step)
    out = []
    for k in range(int((seconds - offset) / step) + 1):
        at = offset + k * step + (2 * (swing - 0.5) * step if k % 2 else 0.0)
        out.append((k % 16, at))
    return out


# --- tonal sounds --------------------------------------------------------------------------------


def _stab(notes: list[int], seconds: float, rate: int, rng: Rng, cutoff: float) -> np.ndarray:
    t = _times(seconds, rate)
    x = sum(_detuned_saws(midi_hz(n), t, 3, 12.0, rng) for n in notes) / len(notes)
    return _filtered(x, "lowpass", cutoff, rate) * np.exp(-t / (seconds / 3)) * _envelope(len(t), rate, 0.003, 0.02)


def _pad(notes: list[int], seconds: float, rate: int, rng: Rng, cutoff: float, attack: float) -> np.ndarray:
    t = _times(seconds, rate)
    sine_mix = rng.uniform(0.0, 1.0)
    x = sum(
        (1 - sine_mix) * _detuned_saws(midi_hz(n), t, 4, rng.uniform(6, 20), rng)
        + sine_mix * np.sin(2 * np.pi * midi_hz(n) * t + rng.uniform(0, 6.3))
        for n in notes
    ) / len(notes)
    return _filtered(x, "lowpass", cutoff, rate) * _envelope(len(t), rate, attack, attack)


def _additive(note: float, seconds: float, rate: int, *, partials: int, tilt: float, decay: float,
              decay_tilt: float, attack: float, vibrato: float = 0.0, inharmonic: float = 0.0,
              rng: Rng) -> np.ndarray:
    """Harmonic (or slightly stretched) partials with per-partial exponential decays."""
    t = _times(seconds, rate)
    f0 = midi_hz(note)
    wobble = 1.0 + vibrato * np.sin(2 * np.pi * rng.uniform(4.5, 6.5) * t) if vibrato else 1.0
    x = np.zeros(len(t))
    for k in range(1, partials + 1):
        fk = f0 * k * math.sqrt(1.0 + inharmonic * k * k)
        if fk > rate * 0.45:
            break
        phase = 2 * np.pi * np.cumsum(fk * wobble * np.ones(len(t))) / rate
        x += k**-tilt * np.sin(phase + rng.uniform(0, 6.3)) * np.exp(-t / (decay / k**decay_tilt))
    return x * _envelope(len(t), rate, attack, min(0.05, seconds / 4))


def _bell(note: float, seconds: float, rate: int, rng: Rng) -> np.ndarray:
    t = _times(seconds, rate)
    ratios = (1.0, 2.76, 5.4, 8.93)
    return sum(np.sin(2 * np.pi * midi_hz(note) * r * t) * np.exp(-t * r / seconds) / r for r in ratios)


# --- the styles ----------------------------------------------------------------------------------


def _electronic(rng: Rng, seconds: float, rate: int) -> np.ndarray:
    bpm = rng.uniform(118, 130)
    beat = 60.0 / bpm
    key, scale, progression = _harmony(rng)
    out = np.zeros(round(seconds * rate))
    kick, clap = _kick(rate, rng), _clap(rate, rng)
    hat_c, hat_o = _hat(rate, rng, 0.02), _hat(rate, rng, rng.uniform(0.06, 0.15))
    hits = []
    bass_line = np.zeros_like(out)
    stabs = np.zeros_like(out)
    cutoff = rng.uniform(900, 4000)
    stab_steps = {int(s) for s in rng.choice([2, 3, 6, 7, 10, 11, 14], size=int(rng.integers(2, 5)), replace=False)}
    for i, (s, at) in enumerate(_steps(seconds, bpm, rng)):
        bar = i // 16
        chord = _chord(key, scale, progression[bar % 4], 48 + 12 * int(rng.integers(0, 2)))
        if s % 4 == 0:
            hits.append((at, kick, 1.0))
        if s in (4, 12) and rng.uniform() < 0.95:
            hits.append((at, clap, 0.6))
        if s % 4 == 2:
            hits.append((at, hat_o, 0.35))
            _place(bass_line, _stab([chord[0] - 24], beat / 2, rate, rng, 400.0), at, rate)
        elif rng.uniform() < 0.5:
            hits.append((at, hat_c, 0.2))
        if s in stab_steps:
            _place(stabs, _stab(chord, beat * rng.uniform(0.3, 0.7), rate, rng, cutoff), at, rate)
    _drum_grid(out, rate, hits, rng)
    t = np.arange(len(out)) / rate
    pump = 1.0 - rng.uniform(0.0, 0.7) * np.exp(-((t + rng.uniform(0, beat)) % beat) / (beat / 4))
    out += pump * (rng.uniform(0.4, 0.9) * bass_line + rng.uniform(0.2, 0.6) * stabs)
    return _reverb(out, rate, rng.uniform(0.3, 1.2), rng.uniform(0.05, 0.2), rng)


def _hip_hop(rng: Rng, seconds: float, rate: int) -> np.ndarray:
    bpm = rng.uniform(80, 98)
    beat = 60.0 / bpm
    key, scale, progression = _harmony(rng)
    out = np.zeros(round(seconds * rate))
    kick, snare, hat = _kick(rate, rng, decay=(0.15, 0.4)), _snare(rate, rng), _hat(rate, rng, rng.uniform(0.02, 0.05))
    kick_steps = [(0, 10), (0, 7, 10), (0, 3, 10, 11), (0, 8, 10), (0, 6, 9)][int(rng.integers(5))]
    swing = rng.uniform(0.54, 0.66)
    hits, sub, keys = [], np.zeros_like(out), np.zeros_like(out)
    t808 = beat * rng.uniform(0.8, 1.8)
    for i, (s, at) in enumerate(_steps(seconds, bpm, rng, swing)):
        chord = _chord(key, scale, progression[(i // 16) % 4], 60)
        if s in kick_steps:
            hits.append((at, kick, 1.0))
            tt = _times(t808, rate)
            boom = np.sin(2 * np.pi * midi_hz(chord[0] - 36) * tt) * _envelope(len(tt), rate, 0.005, t808 / 2)
            _place(sub, boom, at, rate)
        if s in (4, 12):
            hits.append((at, snare, 0.8))
        if s % 2 == 0 or rng.uniform() < 0.35:
            hits.append((at, hat, rng.uniform(0.15, 0.3)))
        if s in (0, 8) and rng.uniform() < 0.8:
            tt = _times(beat * 1.8, rate)
            trem = 1.0 + 0.3 * np.sin(2 * np.pi * rng.uniform(3, 6) * tt)
            epiano = sum(np.sin(2 * np.pi * midi_hz(n) * tt) + 0.2 * np.sin(4 * np.pi * midi_hz(n) * tt) for n in chord)
            _place(keys, epiano * trem * np.exp(-tt / beat) / 3, at, rate)
    _drum_grid(out, rate, hits, rng)
    out += rng.uniform(0.5, 1.0) * sub
    out += rng.uniform(0.1, 0.35) * _filtered(keys, "lowpass", rng.uniform(1500, 4000), rate)
    if rng.uniform() < 0.5:  # vinyl crackle
        crackle = (rng.uniform(size=len(out)) < 0.0008) * rng.standard_normal(len(out))
        out += rng.uniform(0.05, 0.3) * _filtered(crackle, "highpass", 1000.0, rate)
    return _reverb(out, rate, rng.uniform(0.2, 0.8), rng.uniform(0.03, 0.15), rng)


def _rock(rng: Rng, seconds: float, rate: int) -> np.ndarray:
    bpm = rng.uniform(100, 150)
    eighth = 60.0 / bpm / 2
    key, scale, progression = _harmony(rng)
    out = np.zeros(round(seconds * rate))
    kick, snare = _kick(rate, rng), _snare(rate, rng)
    hat = _hat(rate, rng, rng.uniform(0.03, 0.1)) if rng.uniform() < 0.6 else _cymbal(rate, rng, 0.6) * 2
    crash = _cymbal(rate, rng, rng.uniform(1.2, 2.5))
    hits, guitar, bass = [], np.zeros_like(out), np.zeros_like(out)
    drive, palm = rng.uniform(4, 20), rng.uniform() < 0.5
    for i, (s, at) in enumerate(_steps(seconds, bpm, rng)):
        root = key + 40 + scale[progression[(i // 16) % 4]]
        if s in (0, 8) or (s in (6, 10, 14) and rng.uniform() < 0.25):
            hits.append((at, kick, 1.0))
        if s in (4, 12):
            hits.append((at, snare, 0.9))
        if s % 2 == 0:
            hits.append((at, hat, 0.25))
            length = eighth * (0.5 if palm and s % 4 else 1.0)
            tt = _times(length, rate)
            chord = sum(_detuned_saws(midi_hz(n), tt, 2, 8.0, rng) for n in (root + 12, root + 19, root + 24))
            _place(guitar, chord * _envelope(len(tt), rate, 0.003, 0.01), at, rate)
            pluck = _saw(midi_hz(root), tt) * np.exp(-tt / 0.25) * _envelope(len(tt), rate, 0.002, 0.01)
            _place(bass, pluck, at, rate)
        if s == 0 and rng.uniform() < 0.5:
            hits.append((at, crash, 0.5))
    _drum_grid(out, rate, hits, rng)
    amp = np.tanh(drive * guitar / (np.max(np.abs(guitar)) + 1e-9))
    cab = _filtered(_filtered(amp, "lowpass", rng.uniform(2500, 5000), rate, order=4), "highpass", 90.0, rate)
    out += rng.uniform(0.3, 0.7) * cab + rng.uniform(0.3, 0.6) * _filtered(bass, "lowpass", 800.0, rate)
    return _reverb(out, rate, rng.uniform(0.4, 1.5), rng.uniform(0.05, 0.25), rng)


def _ambient(rng: Rng, seconds: float, rate: int) -> np.ndarray:
    key, scale, progression = _harmony(rng)
    out = np.zeros(round(seconds * rate))
    at = -rng.uniform(0, 4)
    cutoff = rng.uniform(600, 3500)
    i = 0
    while at < seconds:
        length = rng.uniform(4, 10)
        notes = _chord(key, scale, progression[i % 4], 48 + 12 * int(rng.integers(0, 2)), size=int(rng.integers(3, 5)))
        _place(out, _pad(notes, length + 2.0, rate, rng, cutoff, rng.uniform(1.0, 3.0)), at, rate)
        at += length
        i += 1
    bells = np.zeros_like(out)
    for _ in range(int(rng.integers(0, 5))):
        note = key + 72 + scale[int(rng.integers(7))]
        _place(bells, _bell(note, rng.uniform(2, 5), rate, rng), rng.uniform(0, seconds), rate)
    out += rng.uniform(0.05, 0.25) * bells
    out += rng.uniform(0.0, 0.05) * _filtered(rng.standard_normal(len(out)), "lowpass", rng.uniform(400, 3000), rate)
    return _reverb(out, rate, rng.uniform(2.0, 6.0), rng.uniform(0.4, 0.8), rng)


def _classical(rng: Rng, seconds: float, rate: int) -> np.ndarray:
    bpm = rng.uniform(60, 120)
    beat = 60.0 / bpm
    key, scale, progression = _harmony(rng)
    out = np.zeros(round(seconds * rate))
    instrument = ("pluck", "bowed", "piano")[int(rng.integers(3))]
    settings = {
        "pluck": dict(partials=14, tilt=rng.uniform(1.0, 1.6), decay=rng.uniform(0.6, 1.5), decay_tilt=0.6,
                      attack=0.002),
        "bowed": dict(partials=12, tilt=rng.uniform(0.8, 1.3), decay=30.0, decay_tilt=0.0,
                      attack=rng.uniform(0.08, 0.25), vibrato=rng.uniform(0.002, 0.006)),
        "piano": dict(partials=12, tilt=rng.uniform(1.2, 1.8), decay=rng.uniform(1.0, 2.5), decay_tilt=0.5,
                      attack=0.003, inharmonic=0.0004),
    }[instrument]
    at, i, melody_note = -rng.uniform(0, 2 * beat), 0, int(rng.integers(0, 7))
    while at < seconds:
        tempo_wobble = rng.uniform(0.9, 1.1)  # rubato
        chord = _chord(key, scale, progression[(i // 4) % 4], 48)
        arpeggio = chord[int(rng.integers(3))] if instrument != "bowed" else chord[i % 3]
        _place(out, _additive(arpeggio, beat * 1.5, rate, rng=rng, **settings), at, rate, 0.5)
        melody_note = int(np.clip(melody_note + rng.integers(-2, 3), 0, 13))
        note = key + 72 + scale[melody_note % 7] + 12 * (melody_note // 7) - 12
        length = beat * rng.choice([0.5, 1.0, 1.0, 2.0])
        _place(out, _additive(note, length * 1.1, rate, rng=rng, **settings), at, rate, rng.uniform(0.5, 1.0))
        at += beat * tempo_wobble
        i += 1
    return _reverb(out, rate, rng.uniform(1.0, 2.5), rng.uniform(0.2, 0.45), rng)


def _drum_and_bass(rng: Rng, seconds: float, rate: int) -> np.ndarray:
    bpm = rng.uniform(160, 180)
    key, scale, progression = _harmony(rng)
    out = np.zeros(round(seconds * rate))
    kick, snare = _kick(rate, rng, decay=(0.08, 0.18)), _snare(rate, rng)
    hat = _hat(rate, rng, rng.uniform(0.015, 0.04))
    kicks = [(0, 10), (0, 10, 11), (0, 6, 10), (0, 2, 10)][int(rng.integers(4))]
    ghosts = {int(s) for s in rng.choice([3, 7, 9, 11, 14, 15], size=int(rng.integers(1, 4)), replace=False)}
    hits, bass = [], np.zeros_like(out)
    bar_seconds = 16 * 60.0 / bpm / 4
    for i, (s, at) in enumerate(_steps(seconds, bpm, rng)):
        if s in kicks:
            hits.append((at, kick, 1.0))
        if s in (4, 12):
            hits.append((at, snare, 1.0))
        elif s in ghosts:
            hits.append((at, snare, rng.uniform(0.2, 0.45)))
        hits.append((at, hat, rng.uniform(0.1, 0.3)))
        if s == 0:
            root = key + 28 + scale[progression[(i // 32) % 4]]
            tt = _times(bar_seconds, rate)
            reese = _detuned_saws(midi_hz(root), tt, 2, rng.uniform(10, 30), rng)
            _place(bass, reese * _envelope(len(tt), rate, 0.01, 0.05), at, rate)
    _drum_grid(out, rate, hits, rng)
    out += rng.uniform(0.3, 0.7) * _filtered(bass, "lowpass", rng.uniform(250, 900), rate, order=4)
    if rng.uniform() < 0.5:
        notes = _chord(key, scale, progression[0], 60)
        out += rng.uniform(0.05, 0.2) * _pad(notes, seconds, rate, rng, rng.uniform(1000, 3000), 1.0)
    return _reverb(out, rate, rng.uniform(0.3, 1.0), rng.uniform(0.05, 0.2), rng)


RENDERERS: dict[str, Callable[[Rng, float, int], np.ndarray]] = {
    "electronic": _electronic,
    "hip hop": _hip_hop,
    "rock": _rock,
    "ambient": _ambient,
    "classical": _classical,
    "drum and bass": _drum_and_bass,
}


# --- mastering and the public entry points -------------------------------------------------------


def _master(x: np.ndarray, rng: Rng, rate: int) -> np.ndarray:
    """The "recording chain": EQ tilt, sometimes a band limit (as low-bitrate codecs do), a high-pass
    (small speakers, phone recordings) or saturation, background noise at 10-60 dB SNR, and a peak
    level between -1 and -12 dBFS. These vary a lot so that the classifier cannot lean on them."""
    x = x - np.mean(x)
    if rng.uniform() < 0.7:
        low = _filtered(x, "lowpass", rng.uniform(200, 2000), rate, order=1)
        x = x + rng.uniform(-0.4, 0.4) * low + rng.uniform(-0.3, 0.3) * (x - low)
    if rng.uniform() < 0.35:
        x = _filtered(x, "lowpass", rng.uniform(3500, 10000), rate, order=6)
    if rng.uniform() < 0.25:
        x = _filtered(x, "highpass", rng.uniform(60, 250), rate, order=4)
    if rng.uniform() < 0.25:
        x = np.tanh(rng.uniform(1.5, 6.0) * x / (np.max(np.abs(x)) + 1e-12))
    level = np.sqrt(np.mean(x**2)) + 1e-12
    noise = _filtered(rng.standard_normal(len(x)), "lowpass", rng.uniform(3000, 10000), rate, order=1)
    x = x + noise * level * 10.0 ** (-rng.uniform(10, 60) / 20.0) / (np.std(noise) + 1e-12)
    peak = np.max(np.abs(x)) + 1e-12
    return (x * 10.0 ** (-rng.uniform(1, 12) / 20.0) / peak).astype(np.float32)


def render(style: str, seed: int, *, seconds: float = CLIP_SECONDS, rate: int = RATE) -> np.ndarray:
    """One mono float32 clip of ``style``; the same (style, seed, seconds, rate) gives the same samples."""
    if style not in RENDERERS:
        raise ValueError(f"unknown style {style!r}; expected one of {STYLES}")
    rng = np.random.default_rng([STYLES.index(style), seed])
    return _master(RENDERERS[style](rng, seconds, rate), rng, rate)


def examples(seeds: range, *, seconds: float = CLIP_SECONDS, rate: int = RATE):
    """(style, seed, clip) for every style and seed, style by style."""
    for style in STYLES:
        for seed in seeds:
            yield style, seed, render(style, seed, seconds=seconds, rate=rate)
