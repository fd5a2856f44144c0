"""Synthetic reference music with a known tempo and key: calibration, tests and benchmarks.

Why: tempo and key estimators need audio whose ground truth is certain, and fingerprinting needs many
tracks that are musically different. Recorded datasets (GiantSteps, Ballroom, GTZAN) cannot ship with
the product; a seeded synthesiser can, and it renders a 30 s song in a small fraction of a second.

What a song is (:class:`SongSpec`): a seed, a tempo, a key, a length and style knobs (drum pattern,
swing, comping, instruments, mix levels, detuning, reverb, noise). :func:`render` turns it into
stereo float32 samples; :func:`corpus` draws a reproducible list of varied specs.

How a song is made, all from the seed:

* Harmony: a 4- or 8-chord progression of diatonic triads (sometimes sevenths) that starts on the tonic
  chord and returns to it (templates such as I-V-vi-IV or i-VI-III-VII, then mutated); minor songs
  may use the harmonic-minor major V. Chords last one or two bars, voiced near middle C with the
  inversion closest to the previous chord (plain voice leading), comped in a per-song rhythm.
* Bass: chord roots in octave 2 in one of several rhythms (quarters, eighths, root-fifth, syncopated),
  with scale passing notes. Melody (optional): a seeded one-bar motif of scale steps, repeated with
  variation, strong beats snapped to chord tones.
* Timbres: wavetable oscillators made of harmonic series (electric piano, organ, saw pad, pluck, reed),
  with a bright table fading into a dull one as the note decays, as struck/plucked strings do. Drums
  are synthesised like analog drum machines: a kick is a sine swept from ~150 Hz down to ~50 Hz with a
  click, a snare is a tuned body plus band-passed noise, hats are high-passed noise plus inharmonic
  square partials (the TR-808 recipe).
* Styles: straight rock, four-on-the-floor, syncopated, swung (off-beat eighths delayed up to a
  triplet), half-time (snare on beat 3 only: the *notated* tempo stays ``bpm``, listeners and
  estimators may hear half of it), or no drums at all. Small timing jitter and velocity changes humanise.
* Realism knobs that make estimation harder: global detuning (±20 cents from A440), a convolution
  reverb (decaying noise, RT60 0.5-2 s, different per channel), pink noise, and per-part mix levels.

Everything is vectorised: notes are table look-ups written into the output with slicing, the reverb is
one overlap-add convolution per channel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
from scipy import signal

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_FLATS = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#", "Cb": "B", "Fb": "E", "E#": "F", "B#": "C"}
MODES = ("major", "minor")
DRUM_STYLES = ("none", "straight", "four_on_floor", "syncopated", "swing", "halftime")
COMPING = ("sustained", "quarters", "offbeats", "syncopated")
INSTRUMENTS = ("epiano", "organ", "pad", "pluck", "reed")
MIN_BPM, MAX_BPM = 70.0, 180.0

SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
# Progressions as scale degrees (0 = tonic); every one starts on the tonic chord.
PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (0, 3, 4, 0), (0, 5, 3, 4), (0, 3, 0, 4), (0, 1, 4, 0), (0, 5, 1, 4),
              (0, 2, 3, 4), (0, 4, 3, 0), (0, 3, 5, 4), (0, 0, 3, 4)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 3, 6, 2), (0, 5, 3, 4), (0, 3, 0, 4),
              (0, 6, 5, 4), (0, 2, 3, 5), (0, 0, 5, 6), (0, 5, 6, 0)),
}
WAVETABLE_SIZE = 4096
STEPS_PER_BAR = 16  # sixteenth-note grid in 4/4


def pitch_class(name: str) -> int:
    """Pitch class 0..11 of a note name: "C", "F#", "Eb", "E♭", "D♯" all work."""
    text = name.strip().replace("♭", "b").replace("♯", "#")
    text = text[:1].upper() + text[1:]
    text = _FLATS.get(text, text)
    if text not in NOTE_NAMES:
        raise ValueError(f"unknown note name {name!r}")
    return NOTE_NAMES.index(text)


@dataclass(frozen=True)
class SongSpec:
    """Everything :func:`render` needs; the seed decides the progression, lines and patterns."""

    seed: int
    bpm: float
    tonic: str  # "C", "F#", "Eb", ... (see :func:`pitch_class`)
    mode: str  # "major" | "minor"
    seconds: float = 30.0
    drums: str = "straight"  # one of DRUM_STYLES
    swing: float = 0.0  # 0 = straight eighths, 1 = triplet swing (off-beats delayed by a sixth of a beat)
    comping: str = "quarters"  # one of COMPING
    instrument: str = "epiano"  # chord instrument, one of INSTRUMENTS
    melody: bool = True
    detune_cents: float = 0.0  # whole-song tuning offset from A440
    reverb: float = 0.2  # wet level 0..1
    noise_db: float = -70.0  # pink noise RMS in dBFS (before the final normalisation)
    levels_db: dict[str, float] = field(default_factory=dict)  # "drums", "bass", "chords", "melody"

    def __post_init__(self) -> None:
        pitch_class(self.tonic)
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        if self.drums not in DRUM_STYLES or self.comping not in COMPING or self.instrument not in INSTRUMENTS:
            raise ValueError("unknown drums, comping or instrument style")
        if self.bpm <= 0 or self.seconds <= 0:
            raise ValueError("bpm and seconds must be positive")

    @property
    def key_label(self) -> str:
        """The key with sharps, e.g. "D# major" for an "Eb" spec."""
        return f"{NOTE_NAMES[pitch_class(self.tonic)]} {self.mode}"


# --- oscillators and envelopes -------------------------------------------------------------------


def _wavetable(amplitudes: np.ndarray) -> np.ndarray:
    x = np.arange(WAVETABLE_SIZE) / WAVETABLE_SIZE
    k = np.arange(1, len(amplitudes) + 1)
    table = np.sin(2 * np.pi * np.outer(x, k)) @ amplitudes
    return (table / np.abs(table).max()).astype(np.float32)


@dataclass(frozen=True)
class _Instrument:
    bright: np.ndarray  # wavetable at the attack
    dull: np.ndarray  # wavetable once the brightness has decayed
    attack_s: float
    decay_s: float  # time constant of the decay towards ``sustain``
    sustain: float
    brightness_s: float  # time constant of the bright-to-dull crossfade
    release_s: float


def _harmonics(count: int, slope: float, odd_only: bool = False, extra: dict[int, float] | None = None) -> np.ndarray:
    k = np.arange(1, count + 1, dtype=np.float64)
    amplitudes = 1.0 / k**slope
    if odd_only:
        amplitudes[1::2] *= 0.08
    for harmonic, value in (extra or {}).items():
        amplitudes[harmonic - 1] = value
    return amplitudes


def _instrument(name: str) -> _Instrument:
    if name == "epiano":
        return _Instrument(_wavetable(_harmonics(12, 1.2, extra={2: 0.55, 4: 0.3})), _wavetable(_harmonics(4, 2.5)),
                           0.004, 0.6, 0.25, 0.15, 0.12)
    if name == "organ":
        drawbars = np.array([1.0, 0.8, 0.6, 0.5, 0.0, 0.35, 0.0, 0.3])
        return _Instrument(_wavetable(drawbars), _wavetable(drawbars), 0.01, 1.0, 1.0, 1.0, 0.05)
    if name == "pad":
        return _Instrument(_wavetable(_harmonics(16, 1.0)), _wavetable(_harmonics(8, 1.6)), 0.08, 1.5, 0.8, 0.6, 0.3)
    if name == "pluck":
        return _Instrument(_wavetable(_harmonics(16, 0.9)), _wavetable(_harmonics(5, 2.2)), 0.002, 0.35, 0.0, 0.08,
                           0.06)
    if name == "reed":
        return _Instrument(_wavetable(_harmonics(11, 1.0, odd_only=True)), _wavetable(_harmonics(7, 1.4, True)),
                           0.03, 0.8, 0.7, 0.4, 0.08)
    if name == "bass":
        return _Instrument(_wavetable(_harmonics(10, 1.3)), _wavetable(_harmonics(3, 2.0)), 0.005, 0.4, 0.35, 0.09,
                           0.05)
    raise ValueError(f"unknown instrument {name!r}")


def _note(instrument: _Instrument, freq: float, seconds: float, rate: int, phase: float = 0.0) -> np.ndarray:
    """One note: table look-up of the harmonic waveform under an attack-decay-sustain-release envelope."""
    held = max(int(seconds * rate), 1)
    n = held + int(instrument.release_s * rate)
    t = np.arange(n, dtype=np.float32) / rate
    index = ((phase + freq * t) * WAVETABLE_SIZE).astype(np.int64) & (WAVETABLE_SIZE - 1)
    envelope = instrument.sustain + (1.0 - instrument.sustain) * np.exp(-t / instrument.decay_s)
    envelope *= np.minimum(t / instrument.attack_s, 1.0)
    release = np.ones(n, dtype=np.float32)
    release[held:] = np.exp(-np.arange(n - held, dtype=np.float32) / (instrument.release_s * rate / 5.0))
    envelope *= release
    bright = np.exp(-t / instrument.brightness_s)
    return envelope * (bright * instrument.bright[index] + (1.0 - bright) * instrument.dull[index])


def _add(track: np.ndarray, sound: np.ndarray, start_s: float, rate: int, gain: float = 1.0) -> None:
    start = int(round(start_s * rate))
    if start >= len(track) or start + len(sound) <= 0:
        return
    first = max(0, -start)
    stop = min(len(sound), len(track) - start)
    track[start + first : start + stop] += gain * sound[first:stop]


def _midi_hz(midi: float, detune_cents: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0 + detune_cents / 100.0) / 12.0)


# --- drums ---------------------------------------------------------------------------------------


def _decay(n: int, rate: int, tau_s: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (tau_s * rate)).astype(np.float32)


def _kick(rng: np.random.Generator, rate: int) -> np.ndarray:
    n = int(0.4 * rate)
    t = np.arange(n) / rate
    start, end, sweep = rng.uniform(120, 180), rng.uniform(45, 60), rng.uniform(0.025, 0.05)
    freq = end + (start - end) * np.exp(-t / sweep)
    body = np.sin(2 * np.pi * np.cumsum(freq) / rate) * np.exp(-t / rng.uniform(0.12, 0.22))
    click = rng.standard_normal(n) * _decay(n, rate, 0.002) * 0.4
    return np.tanh(1.5 * (body + click)).astype(np.float32)


def _snare(rng: np.random.Generator, rate: int) -> np.ndarray:
    n = int(0.35 * rate)
    t = np.arange(n) / rate
    tune = rng.uniform(170, 230)
    body = (np.sin(2 * np.pi * tune * t) + 0.5 * np.sin(2 * np.pi * 1.7 * tune * t)) * np.exp(-t / 0.05)
    sos = signal.butter(2, (1500, min(9000, 0.45 * rate)), btype="bandpass", fs=rate, output="sos")
    noise = signal.sosfilt(sos, rng.standard_normal(n)) * np.exp(-t / rng.uniform(0.08, 0.16))
    return (0.5 * body + 1.6 * noise).astype(np.float32)


def _hat(rng: np.random.Generator, rate: int, open_hat: bool) -> np.ndarray:
    n = int((0.5 if open_hat else 0.12) * rate)
    t = np.arange(n) / rate
    metal = sum(np.sign(np.sin(2 * np.pi * f * 1.8 * t)) for f in (205.3, 304.4, 369.6, 522.7, 540.0, 800.0))
    sos = signal.butter(4, min(7000, 0.4 * rate), btype="highpass", fs=rate, output="sos")
    sound = signal.sosfilt(sos, 0.3 * metal + rng.standard_normal(n))
    tau = rng.uniform(0.12, 0.22) if open_hat else rng.uniform(0.015, 0.035)
    return (0.35 * sound * np.exp(-t / tau)).astype(np.float32)


def _drum_pattern(style: str, rng: np.random.Generator) -> dict[str, list[tuple[int, float]]]:
    """Sixteenth-step hits per bar, (step, velocity), for each drum."""
    if style == "straight":
        kick = [(0, 1.0), (8, 0.9)] + ([(10, 0.7)] if rng.random() < 0.5 else [])
        snare = [(4, 1.0), (12, 1.0)]
        hats = [(s, 0.8 if s % 4 == 0 else 0.55) for s in range(0, 16, 2)]
        return {"kick": kick, "snare": snare, "hat": hats, "open": []}
    if style == "four_on_floor":
        return {"kick": [(s, 1.0) for s in (0, 4, 8, 12)], "snare": [(4, 0.8), (12, 0.8)],
                "hat": [(s, 0.4) for s in range(0, 16, 4)], "open": [(s, 0.6) for s in (2, 6, 10, 14)]}
    if style == "syncopated":
        choices = ((0, 3, 6, 10), (0, 6, 8, 11), (0, 3, 8, 14), (0, 7, 10))
        kick = [(s, 1.0 if s == 0 else 0.8) for s in choices[rng.integers(len(choices))]]
        snare = [(4, 1.0), (12, 1.0)] + ([(15, 0.35)] if rng.random() < 0.5 else [])
        hats = [(s, 0.7 if s % 4 == 0 else 0.5 if s % 2 == 0 else 0.3) for s in range(16)]
        return {"kick": kick, "snare": snare, "hat": hats, "open": []}
    if style == "swing":
        return {"kick": [(0, 1.0), (8, 0.8)], "snare": [(4, 0.9), (12, 0.9)],
                "hat": [(s, 0.75 if s % 4 == 0 else 0.5) for s in range(0, 16, 2)], "open": []}
    if style == "halftime":
        kick = [(0, 1.0)] + ([(6, 0.7)] if rng.random() < 0.5 else [(14, 0.7)])
        return {"kick": kick, "snare": [(8, 1.0)], "hat": [(s, 0.7 if s % 4 == 0 else 0.45) for s in range(0, 16, 2)],
                "open": []}
    return {"kick": [], "snare": [], "hat": [], "open": []}


def _step_time(step: int, beat_s: float, swing: float) -> float:
    """Onset of a sixteenth step within a bar; swing delays the off-beat eighths (and their sixteenths)."""
    time = step * beat_s / 4.0
    if step % 4 == 2:
        time += swing * beat_s / 6.0
    elif step % 2 == 1:
        time += swing * beat_s / 12.0
    return time


def _render_drums(spec: SongSpec, rng: np.random.Generator, n: int, rate: int, bars: int) -> np.ndarray:
    track = np.zeros(n, dtype=np.float32)
    if spec.drums == "none":
        return track
    beat = 60.0 / spec.bpm
    sounds = {"kick": _kick(rng, rate), "snare": _snare(rng, rate), "hat": _hat(rng, rate, False),
              "open": _hat(rng, rate, True)}
    gains = {"kick": 1.0, "snare": 0.8, "hat": rng.uniform(0.35, 0.6), "open": rng.uniform(0.3, 0.5)}
    pattern = _drum_pattern(spec.drums, rng)
    swing = spec.swing if spec.drums == "swing" else 0.0
    for bar in range(bars):
        fill = bar % 8 == 7 and rng.random() < 0.6
        for name, hits in pattern.items():
            for step, velocity in hits:
                if fill and name == "snare" and step >= 8:
                    continue
                when = bar * 4 * beat + _step_time(step, beat, swing) + rng.normal(0.0, 0.003)
                _add(track, sounds[name], when, rate, gains[name] * velocity * rng.uniform(0.85, 1.0))
        if fill:  # a snare fill on the last beats of every eighth bar
            for step in (8, 10, 12, 13, 14, 15):
                when = bar * 4 * beat + _step_time(step, beat, swing)
                _add(track, sounds["snare"], when, rate, 0.5 + 0.04 * step)
    return track


# --- harmony -------------------------------------------------------------------------------------


def _scale(mode: str) -> tuple[int, ...]:
    return SCALES[mode]


def _triad(degree: int, mode: str, seventh: bool, harmonic_minor_v: bool) -> list[int]:
    """Semitones above the tonic of the chord on a scale degree (root, third, fifth[, seventh])."""
    scale = list(_scale(mode))
    if harmonic_minor_v and mode == "minor" and degree == 4:
        scale[6] = 11
    notes = [scale[(degree + 2 * i) % 7] + 12 * ((degree + 2 * i) // 7) for i in range(4 if seventh else 3)]
    return notes


def _progression(spec: SongSpec, rng: np.random.Generator) -> list[int]:
    templates = PROGRESSIONS[spec.mode]
    chords = list(templates[rng.integers(len(templates))])
    if rng.random() < 0.5:  # mutate one chord, keeping the opening tonic
        chords[int(rng.integers(1, 4))] = int(rng.integers(0, 7))
    if rng.random() < 0.4:  # an eight-chord form: a second phrase
        second = list(templates[rng.integers(len(templates))])
        second[-1] = 0 if rng.random() < 0.6 else second[-1]
        chords += second
    return chords


def _voicing(intervals: list[int], tonic_midi: int, previous: list[int] | None) -> list[int]:
    """The inversion of the chord closest to the previous voicing (or to E4 for the first chord)."""
    base = [tonic_midi + i for i in intervals]
    candidates = []
    for inversion in range(len(base)):
        notes = sorted(n + 12 * (i < inversion) for i, n in enumerate(base))
        for shift in (-24, -12, 0, 12):
            candidates.append([n + shift for n in notes])
    target = np.mean(previous) if previous else 64.0
    return min(candidates, key=lambda c: abs(np.mean(c) - target) + 0.5 * (min(c) < 52) + 0.5 * (max(c) > 79))


def _comp_steps(style: str, rng: np.random.Generator) -> list[tuple[int, int]]:
    """(start step, length in steps) of the chord hits within a bar."""
    if style == "sustained":
        return [(0, 16)] if rng.random() < 0.5 else [(0, 8), (8, 8)]
    if style == "quarters":
        return [(s, 3) for s in (0, 4, 8, 12)]
    if style == "offbeats":
        return [(s, 2) for s in (2, 6, 10, 14)]
    patterns = (((0, 3), (3, 3), (6, 4), (10, 2), (12, 4)), ((0, 6), (6, 4), (10, 6)), ((0, 2), (3, 5), (8, 2),
                                                                                         (11, 5)))
    return list(patterns[rng.integers(len(patterns))])


def _bass_steps(rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """(step, length in steps, interval above the root in semitones) of the bass notes in a bar."""
    patterns = (
        [(0, 4, 0), (4, 4, 0), (8, 4, 0), (12, 4, 0)],
        [(s, 2, 12 if s % 4 == 2 else 0) for s in range(0, 16, 2)],
        [(0, 6, 0), (6, 2, 7), (8, 6, 0), (14, 2, 7)],
        [(0, 3, 0), (3, 3, 0), (6, 2, 7), (8, 3, 0), (11, 3, 12), (14, 2, 7)],
        [(0, 8, 0), (8, 4, 7), (12, 4, 0)],
    )
    return patterns[rng.integers(len(patterns))]


def _motif(rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """(step, length, scale-step offset) of a one-bar melodic motif: a seeded random walk."""
    starts = sorted(rng.choice(np.arange(0, 16, 2), size=int(rng.integers(3, 7)), replace=False).tolist())
    notes, degree = [], int(rng.integers(0, 5))
    for i, step in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else 16
        degree = int(np.clip(degree + rng.choice([-2, -1, -1, 0, 1, 1, 2, 3]), -3, 9))
        notes.append((step, max(1, end - step), degree))
    return notes


def _render_harmony(spec: SongSpec, rng: np.random.Generator, n: int, rate: int, bars: int) -> dict[str, np.ndarray]:
    beat = 60.0 / spec.bpm
    step_s = beat / 4.0
    tonic_midi = 60 + pitch_class(spec.tonic)
    if tonic_midi > 65:
        tonic_midi -= 12
    detune = spec.detune_cents
    progression = _progression(spec, rng)
    bars_per_chord = 2 if rng.random() < 0.35 else 1
    seventh = rng.random() < 0.3
    harmonic_v = rng.random() < 0.6
    comp = _comp_steps(spec.comping, rng)
    bass_steps = _bass_steps(rng)
    motif = _motif(rng)
    chords_instrument, bass_instrument = _instrument(spec.instrument), _instrument("bass")
    melody_instrument = _instrument(("pluck", "reed", "epiano", "organ")[rng.integers(4)])
    scale = _scale(spec.mode)
    parts = {name: np.zeros(n, dtype=np.float32) for name in ("chords", "bass", "melody")}
    previous = None
    for bar in range(bars):
        degree = progression[(bar // bars_per_chord) % len(progression)]
        intervals = _triad(degree, spec.mode, seventh and degree != 0, harmonic_v)
        voicing = _voicing(intervals, tonic_midi, previous)
        previous = voicing
        bar_start = bar * 4 * beat
        for step, length in comp:
            for midi in voicing:
                sound = _note(chords_instrument, _midi_hz(midi, detune), length * step_s * 0.95, rate,
                              phase=float(rng.random()))
                _add(parts["chords"], sound, bar_start + step * step_s + rng.normal(0, 0.004), rate,
                     rng.uniform(0.8, 1.0) / len(voicing))
        root = tonic_midi - 24 + intervals[0]
        for step, length, above in bass_steps:
            midi = root + above
            if step == 14 and rng.random() < 0.3:  # a scale passing note into the next bar
                midi = tonic_midi - 24 + scale[int(rng.integers(7))]
            sound = _note(bass_instrument, _midi_hz(midi, detune), length * step_s * 0.9, rate)
            _add(parts["bass"], sound, bar_start + step * step_s, rate, rng.uniform(0.8, 1.0))
        if spec.melody and bar % 4 != 3:
            chord_tones = [(i % 12) for i in intervals]
            for step, length, offset in motif:
                scale_index = offset + (bar % 2) * int(rng.integers(-1, 2))
                semitones = scale[scale_index % 7] + 12 * (scale_index // 7)
                if step % 8 == 0 and semitones % 12 not in chord_tones:  # strong beats land on chord tones
                    semitones = min((c + 12 * (semitones // 12) for c in chord_tones),
                                    key=lambda c, s=semitones: abs(c - s))
                sound = _note(melody_instrument, _midi_hz(tonic_midi + 12 + semitones, detune),
                              length * step_s * 0.9, rate)
                _add(parts["melody"], sound, bar_start + _step_time(step, beat, spec.swing), rate, 0.7)
    return parts


# --- mix -----------------------------------------------------------------------------------------


def _reverb(mono: np.ndarray, rng: np.random.Generator, rate: int, amount: float) -> np.ndarray:
    """(2, n) wet signal: the input convolved with exponentially decaying noise, one tail per channel."""
    rt60 = 0.5 + 1.5 * amount
    length = int(min(rt60, 1.2) * rate)
    decay = np.exp(-6.9 * np.arange(length) / (rt60 * rate))
    sos = signal.butter(1, 5000, fs=rate, output="sos")
    wet = []
    for _ in range(2):
        impulse = signal.sosfilt(sos, rng.standard_normal(length)) * decay
        impulse[: int(0.01 * rate)] = 0.0  # pre-delay
        impulse /= np.sqrt(np.sum(impulse**2))
        wet.append(signal.oaconvolve(mono, impulse.astype(np.float32))[: len(mono)])
    return np.array(wet, dtype=np.float32)


def _pink_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Approximately 1/f noise (Paul Kellet's economy filter), unit RMS."""
    b = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
    a = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])
    noise = signal.lfilter(b, a, rng.standard_normal(n))
    return (noise / np.sqrt(np.mean(noise**2))).astype(np.float32)


def _pan(mono: np.ndarray, position: float) -> np.ndarray:
    """Constant-power pan; position -1 (left) .. 1 (right)."""
    angle = (position + 1.0) * math.pi / 4.0
    return np.array([math.cos(angle) * mono, math.sin(angle) * mono], dtype=np.float32)


def render(spec: SongSpec, rate: int = 44100) -> np.ndarray:
    """The song as float32 samples shaped (2, n) in [-1, 1] (peak normalised to -1 dBFS)."""
    rng = np.random.default_rng(spec.seed)
    n = int(round(spec.seconds * rate))
    bars = int(math.ceil(spec.seconds * spec.bpm / 240.0)) + 1
    harmony_rng, drum_rng, mix_rng = (np.random.default_rng(s) for s in rng.integers(0, 2**32, size=3))
    parts = _render_harmony(spec, harmony_rng, n, rate, bars)
    parts["drums"] = _render_drums(spec, drum_rng, n, rate, bars)
    base_levels = {"drums": 0.9, "bass": 0.8, "chords": 0.9, "melody": 0.5}
    positions = {"drums": 0.0, "bass": 0.0, "chords": float(mix_rng.uniform(-0.4, 0.4)),
                 "melody": float(mix_rng.uniform(-0.5, 0.5))}
    mix = np.zeros((2, n), dtype=np.float32)
    send = np.zeros(n, dtype=np.float32)
    for name, part in parts.items():
        peak = float(np.abs(part).max())
        if peak == 0.0:
            continue
        gain = base_levels[name] * 10.0 ** (spec.levels_db.get(name, 0.0) / 20.0) / peak
        mix += _pan(part * gain, positions[name])
        send += part * gain * (0.3 if name in ("drums", "bass") else 1.0)
    if spec.reverb > 0.0:
        mix += spec.reverb * _reverb(send, mix_rng, rate, spec.reverb)
    mix /= max(float(np.abs(mix).max()), 1e-9) / 0.8
    if spec.noise_db > -120.0:
        level = 10.0 ** (spec.noise_db / 20.0)
        mix += level * np.array([_pink_noise(mix_rng, n), _pink_noise(mix_rng, n)])
    mix = np.tanh(mix)  # soft limiter: keeps the mix in [-1, 1] like a mastering clipper
    return (mix * (0.891 / max(float(np.abs(mix).max()), 1e-9))).astype(np.float32)


def corpus(n: int, seed: int = 0, seconds: float = 30.0) -> list[SongSpec]:
    """``n`` varied songs: tempi log-spaced over 70-180 BPM (shuffled), tonics and modes cycled so that
    every key appears once ``n`` ≥ 24, drum styles, swing, comping, instruments, mixes, detuning,
    reverb and noise drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    tempi = MIN_BPM * (MAX_BPM / MIN_BPM) ** ((np.arange(n) + rng.uniform(0, 1, n)) / max(n, 1))
    tempi = rng.permutation(tempi)
    tonics = [NOTE_NAMES[i] for i in np.concatenate([rng.permutation(12) for _ in range(n // 12 + 1)])[:n]]
    first_mode = int(rng.integers(2))
    modes = [MODES[(i + first_mode) % 2] for i in range(n)]
    # Drums in 5 of 6 songs: some material has none, most has some; styles in even shares.
    styles = [DRUM_STYLES[(i % (len(DRUM_STYLES) - 1)) + 1] for i in range(n)]
    styles = [("none" if i % 6 == 5 else s) for i, s in enumerate(rng.permutation(styles))]
    specs = []
    for i in range(n):
        detuned = rng.random() < 0.35
        specs.append(SongSpec(
            seed=int(rng.integers(0, 2**31)),
            bpm=round(float(tempi[i]), 1),
            tonic=tonics[i],
            mode=modes[i],
            seconds=seconds,
            drums=styles[i],
            swing=float(rng.uniform(0.5, 1.0)) if styles[i] == "swing" else 0.0,
            comping=COMPING[int(rng.integers(len(COMPING)))],
            instrument=INSTRUMENTS[int(rng.integers(len(INSTRUMENTS)))],
            melody=bool(rng.random() < 0.75),
            detune_cents=float(rng.uniform(-20, 20)) if detuned else 0.0,
            reverb=float(rng.uniform(0.0, 0.6)),
            noise_db=float(rng.uniform(-60, -30)),
            levels_db={part: float(rng.uniform(-6, 3)) for part in ("drums", "bass", "chords", "melody")},
        ))
    return specs


# --- writing ---------------------------------------------------------------------------------------

CODECS = {  # suffix: (container format, codec)
    ".wav": ("wav", "pcm_s16le"),
    ".flac": ("flac", "flac"),
    ".mp3": ("mp3", "libmp3lame"),
    ".m4a": ("ipod", "aac"),
    ".ogg": ("ogg", "libopus"),
}


def write_audio(path: Path, samples: np.ndarray, rate: int) -> Path:
    """Encode (channels, n) float32 samples into the codec that ``path``'s suffix names."""
    container_format, codec = CODECS[path.suffix]
    layout = "mono" if samples.shape[0] == 1 else "stereo"
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, np.float32), format="fltp", layout=layout)
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout=layout, rate=rate)
        for converted in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(converted):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path
