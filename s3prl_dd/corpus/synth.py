"""Source-filter synthesis of speech-like emotional utterances (numpy/scipy only).

Each utterance is a string of syllables: a jittered glottal pulse train plus aspiration noise
(a low-pass sets the spectral tilt), through a cascade of four formant resonators whose
frequencies depend on the vowel and on the speaker's vocal tract, under a raised-cosine
envelope; fricative noise, gaps and pauses sit between syllables. A speaker (``Voice``) fixes
pitch, formants, two extra resonances, loudness, tilt and breathiness; an emotion is a
distribution over pitch level and range, syllable rate, pauses, energy, tilt, jitter and
breathiness; a session (``Channel``) adds its own background noise and microphone colour.

The emotion distributions overlap on purpose. Their means are wider apart than in natural
speech because the linear ER model only sees an utterance's average spectrum, where syllable
timing and pauses add a lot of noise; they are calibrated (``calibrate.py``) so that this
model is right about 70% of the time (UAR), as on EmoDB, not 100%. The speakers' extra
resonances keep them recognisable (speaker ID ~80-86% on the same features)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, lfilter, sosfilt

from ..protocol import LABEL_ALIASES
from ..protocol import SAMPLE_RATE as SR

# Mean style per emotion: pitch shift (semitones from the voice's median), pitch range
# (semitones of accent excursion), syllable rate (per s), share of gaps that are pauses,
# energy (dB), spectral tilt (dB of high-frequency boost), jitter (% of the period) and
# aspiration-noise ratio. Directions follow the vocal-affect literature (anger: loud, pressed,
# fast; sadness: soft, breathy, slow, low and flat pitch; happiness: high, wide pitch).
STYLE_KEYS = ("pitch", "range", "rate", "pause", "energy", "tilt", "jitter", "breath")
EMOTIONS = {
    "neu": dict(pitch=0.0, range=2.0, rate=4.0, pause=0.06, energy=0.0, tilt=0.0, jitter=1.0, breath=0.10),
    "hap": dict(pitch=5.0, range=6.5, rate=4.9, pause=0.03, energy=7.0, tilt=5.0, jitter=1.4, breath=0.06),
    "ang": dict(pitch=3.5, range=4.5, rate=5.2, pause=0.01, energy=14.0, tilt=12.0, jitter=2.4, breath=0.02),
    "sad": dict(pitch=-3.5, range=0.6, rate=2.8, pause=0.20, energy=-10.0, tilt=-7.0, jitter=2.0, breath=0.30),
}
# Within-emotion spread (one standard deviation) of each style dimension, per utterance.
SPREAD = dict(pitch=1.6, range=1.0, rate=0.5, pause=0.03, energy=2.4, tilt=2.0, jitter=0.4, breath=0.05)
# Labels IEMOCAP has that the 4-class protocol drops: (a, b, w) renders (1-w)*a + w*b.
OTHER_STYLES = {"fru": ("neu", "ang", 0.5), "sur": ("hap", "hap", 0.0), "xxx": None}
LIMITS = dict(pitch=(-8, 8), range=(0.3, 9), rate=(2.0, 7.0), pause=(0.0, 0.4), energy=(-18, 18),
              tilt=(-12, 15), jitter=(0.2, 5.0), breath=(0.01, 0.6))

# Vowel formants F1..F4 (Hz) of an adult male vocal tract (Peterson & Barney-like).
VOWELS = np.array([[730, 1090, 2440, 3400], [530, 1840, 2480, 3500], [270, 2290, 3010, 3700],
                   [570, 840, 2410, 3400], [300, 870, 2240, 3400], [490, 1350, 1690, 3300]], float)
SCHWA = np.array([500.0, 1500.0, 2500.0, 3500.0])
VOWEL_CONTRAST = 0.5
TIMBRE_BANDS = ((700.0, 1800.0), (1800.0, 4000.0))  # where each speaker's extra resonances fall
BANDWIDTHS = np.array([70.0, 100.0, 140.0, 200.0])
FRICATIVE = butter(4, [2500, 7000], btype="bandpass", fs=SR, output="sos")


@dataclass(frozen=True)
class Voice:
    f0: float             # median pitch, Hz
    formants: tuple       # the speaker's neutral-vowel F1..F4, Hz (vocal-tract length and shape)
    timbre: tuple         # ((Hz, dB), ...): fixed extra resonances (nasal/sinus cavities)
    tilt: float           # habitual tilt offset, dB
    level: float          # habitual loudness, dB
    breath: float         # additive aspiration ratio
    rate: float           # habitual speaking-rate factor
    jitter: float         # extra jitter, % of the period


@dataclass(frozen=True)
class Channel:
    noise_db: float   # background noise level, dBFS
    colour: float     # first-order microphone colour: >0 brighter, <0 duller


def make_voice(rng: np.random.Generator, sex: str) -> Voice:
    female = sex == "F"
    scale = rng.normal(1.17, 0.06) if female else rng.normal(1.0, 0.06)
    # beyond length, each tract has its own shape: every formant moves on its own a little
    formants = SCHWA * scale * np.exp(rng.normal(0, 0.07, 4))
    return Voice(
        f0=float(rng.normal(205, 22) if female else rng.normal(118, 14)),
        formants=tuple(float(f) for f in formants),
        timbre=tuple((float(np.exp(rng.uniform(np.log(lo), np.log(hi)))), float(rng.uniform(10, 16)))
                     for lo, hi in TIMBRE_BANDS),
        tilt=float(rng.normal(0, 1.5)),
        level=float(rng.normal(0, 1.5)),
        breath=float(max(0.0, rng.normal(0.05 if female else 0.02, 0.03))),
        rate=float(np.exp(rng.normal(0, 0.1))),
        jitter=float(abs(rng.normal(0, 0.4))),
    )


def make_channel(rng: np.random.Generator) -> Channel:
    return Channel(noise_db=float(rng.uniform(-60, -52)), colour=float(rng.normal(0, 0.15)))


def draw_style(rng: np.random.Generator, label: str, separation: float = 1.0,
               spread: float = 1.0) -> dict:
    """One utterance's style: the emotion's mean, pulled towards neutral by ``separation`` < 1,
    plus Gaussian spread."""
    label = LABEL_ALIASES.get(label, label)  # exc is rendered as hap
    if label in EMOTIONS:
        mean = EMOTIONS[label]
    elif OTHER_STYLES.get(label) is not None:
        a, b, w = OTHER_STYLES[label]
        mean = {k: (1 - w) * EMOTIONS[a][k] + w * EMOTIONS[b][k] for k in STYLE_KEYS}
    else:  # xxx: annotators disagreed; any of the four
        mean = EMOTIONS[list(EMOTIONS)[rng.integers(len(EMOTIONS))]]
    neu = EMOTIONS["neu"]
    style = {}
    for k in STYLE_KEYS:
        v = neu[k] + separation * (mean[k] - neu[k]) + spread * SPREAD[k] * rng.normal()
        style[k] = float(np.clip(v, *LIMITS[k]))
    return style


# ----------------------------------------------------------------------------- rendering
def _resonators(formants: np.ndarray, bandwidths: np.ndarray) -> np.ndarray:
    """Cascade of 2-pole resonators with unit gain at DC, as second-order sections."""
    r = np.exp(-np.pi * bandwidths / SR)
    theta = 2 * np.pi * np.minimum(formants, 0.45 * SR) / SR
    a1, a2 = -2 * r * np.cos(theta), r ** 2
    b0 = 1 + a1 + a2
    z = np.zeros_like(b0)
    return np.stack([b0, z, z, np.ones_like(b0), a1, a2], axis=1)


def _syllable_plan(rng, n_samples: int, rate: float, pause: float) -> list[tuple[int, int]]:
    """(start, end) sample spans of syllables filling the speech part of the utterance, with
    short gaps (consonants) and, with probability ``pause``, a longer pause."""
    spans, t = [], int(rng.uniform(0.05, 0.15) * SR)
    end_speech = n_samples - int(rng.uniform(0.05, 0.15) * SR)
    while True:
        dur = int(SR / rate * np.clip(rng.normal(0.75, 0.15), 0.4, 1.2))
        if t + dur > end_speech:
            break
        spans.append((t, t + dur))
        gap = SR / rate * np.clip(rng.normal(0.25, 0.06), 0.1, 0.45)
        if rng.random() < pause:
            gap += rng.uniform(0.15, 0.35) * SR
        t += dur + int(gap)
    if not spans:  # very short utterance at a slow rate: one syllable anyway
        spans.append((int(0.05 * SR), max(int(0.05 * SR) + 400, end_speech)))
    return spans


def _f0_contour(rng, n: int, spans, voice: Voice, style: dict) -> np.ndarray:
    """Sample-level f0: declination plus one accent per syllable, in semitones around the
    voice's median shifted by the emotion."""
    centres = np.array([(a + b) / 2 for a, b in spans], float)
    accents = style["range"] * rng.uniform(-0.4, 1.0, len(spans))
    decl = -2.0 * centres / n
    knots_x = np.concatenate([[0.0], centres, [n - 1.0]])
    knots_y = np.concatenate([[accents[0]], accents + decl, [accents[-1] - 2.0]])
    semis = style["pitch"] + np.interp(np.arange(n), knots_x, knots_y)
    return voice.f0 * 2.0 ** (semis / 12.0)


def _pulses(rng, f0: np.ndarray, jitter_pct: float) -> np.ndarray:
    """Glottal impulse train from the integrated phase of ``f0``, each pulse moved by jitter
    and scaled by shimmer."""
    phase = np.cumsum(f0 / SR)
    idx = np.flatnonzero(np.diff(np.floor(phase)) > 0)
    period = SR / f0[idx]
    idx = np.clip(np.round(idx + rng.normal(0, jitter_pct / 100, len(idx)) * period), 0, len(f0) - 1)
    out = np.zeros(len(f0))
    np.add.at(out, idx.astype(int), np.exp(rng.normal(0, 0.5 * jitter_pct / 10, len(idx))))
    return out


def _envelope(n: int, attack: float = 0.25) -> np.ndarray:
    k = max(1, int(n * attack))
    env = np.ones(n)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, k))
    env[:k], env[-k:] = ramp, ramp[::-1]
    return env


def _peak(x: np.ndarray, freq: float, gain_db: float, bandwidth: float = 300.0) -> np.ndarray:
    """Adds a resonance at ``freq``: a constant-skirt band-pass in parallel with the input."""
    r = np.exp(-np.pi * bandwidth / SR)
    theta = 2 * np.pi * freq / SR
    b = [(1 - r * r) / 2, 0, -(1 - r * r) / 2]  # unit gain at the centre frequency
    return x + (_db(gain_db) - 1) * lfilter(b, [1, -2 * r * np.cos(theta), r * r], x)


def _db(x: float) -> float:
    return 10.0 ** (x / 20.0)


def render(rng: np.random.Generator, voice: Voice, style: dict, channel: Channel,
           duration: float) -> np.ndarray:
    """One utterance of ``duration`` seconds as float32 in [-1, 1]."""
    n = int(round(duration * SR))
    spans = _syllable_plan(rng, n, style["rate"] * voice.rate, style["pause"])
    f0 = _f0_contour(rng, n, spans, voice, style)
    glottal = _pulses(rng, f0, style["jitter"] + voice.jitter)
    # Spectral tilt: a one-pole low-pass whose corner rises with the tilt (pressed voice has
    # more high-frequency energy), then the glottal pulse's own low-pass and lip radiation.
    corner = 150.0 * _db(style["tilt"] + voice.tilt)
    pole = float(np.exp(-2 * np.pi * min(corner, 3000.0) / SR))
    source = lfilter([1 - pole], [1, -pole], glottal)
    source = lfilter([1, -0.95], [1], lfilter([1 - 0.9], [1, -0.9], source))
    source = source / (np.sqrt(np.mean(source ** 2)) + 1e-9)
    noise = rng.normal(0, 1, n)
    breath = style["breath"] + voice.breath

    speech = np.zeros(n)
    tail = int(0.03 * SR)
    for i, (a, b) in enumerate(spans):
        # vowels pulled half-way to schwa: a 2 s utterance has few syllables, and full vowel
        # contrasts would make its average spectrum depend more on the words than on the talker
        target = 1 + VOWEL_CONTRAST * (VOWELS[rng.integers(len(VOWELS))] / SCHWA - 1)
        vowel = np.array(voice.formants) * target * np.exp(rng.normal(0, 0.03, 4))
        exc = (source[a:b] + breath * 3.0 * noise[a:b]) * _envelope(b - a)
        seg = sosfilt(_resonators(vowel, BANDWIDTHS), np.concatenate([exc, np.zeros(tail)]))
        stress = _db(rng.normal(0, 2.0) + (3.0 if i == 0 else 0.0))
        seg *= stress / (np.sqrt(np.mean(seg[: b - a] ** 2)) + 1e-9)
        end = min(n, b + tail)
        speech[a:end] += seg[: end - a]
        # a fricative in the gap after most syllables
        nxt = spans[i + 1][0] if i + 1 < len(spans) else n
        if rng.random() < 0.5 and nxt - b > 400:
            m = min(nxt - b, int(rng.uniform(0.03, 0.08) * SR))
            fric = sosfilt(FRICATIVE, noise[b:b + m]) * _envelope(m, 0.4)
            speech[b:b + m] += 0.08 * _db(0.5 * style["tilt"]) * fric

    for freq, gain in voice.timbre:
        speech = _peak(speech, freq, gain)
    # loudness: speech at about -34 dBFS RMS (headroom for loud anger), moved by the voice,
    # the emotion and a recording gain
    level = -34.0 + voice.level + style["energy"] + rng.normal(0, 1.5)
    active = np.abs(speech) > 1e-4
    rms = np.sqrt(np.mean(speech[active] ** 2)) if active.any() else 1.0
    speech *= _db(level) / rms
    bg = lfilter([1], [1, -0.7], rng.normal(0, 1, n))
    speech += _db(channel.noise_db) * bg / np.sqrt(np.mean(bg ** 2))
    if channel.colour:  # microphone colour: mix in a first difference (brighter) or a smoothing
        c = channel.colour
        speech = speech + c * lfilter([1, -1], [1], speech) if c > 0 else \
            (1 + c) * speech + (-c) * lfilter([0.5], [1, -0.5], speech)
    peak = np.max(np.abs(speech))
    if peak > 0.99:  # keep PCM16 from clipping; only the loudest angry takes get here
        speech *= 0.99 / peak
    return speech.astype(np.float32)
