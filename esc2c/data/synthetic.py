"""A built-in sound set generated deterministically from a seed: ten classes of clearly different sounds.

Every clip is one event (random onset, duration, level and parameters within its class) over white
background noise at a random signal-to-noise ratio, so the task is learnable but not trivial. Clip ``i`` of
class ``c`` draws from ``numpy.random.default_rng([seed, c, i])``: the same seed gives the same clips at any
size, and clip ``i`` belongs to fold ``i % 5 + 1`` (5 balanced folds, like ESC-50).
"""
from __future__ import annotations

import numpy as np

from esc2c.data.catalog import Catalog, Entry

CLASSES = (
    "tone",  # steady sine
    "up_chirp",  # exponential upward sweep
    "down_chirp",  # exponential downward sweep
    "noise_bursts",  # 1-4 short white-noise bursts
    "click_train",  # decaying clicks at 4-30 Hz
    "siren",  # two tones alternating
    "am_tone",  # sine with 4-16 Hz amplitude modulation
    "pink_noise",  # 1/f noise
    "harmonic",  # harmonic stack with 1/k amplitudes
    "warble",  # sinusoidal frequency modulation
)
FOLDS = 5
PER_CLASS = 60
VERSION = 1  # bump when the generator changes (part of the feature cache key)


def fold_of(index: int) -> int:
    return index % FOLDS + 1


def catalog(seed: int = 0, per_class: int = PER_CLASS) -> Catalog:
    """The listing of the synthetic set: ``per_class`` clips of each class, all present."""
    entries = [
        Entry(f"synthetic/seed{seed}/{name}/{i:04d}", c, fold_of(i), f"synthetic/seed{seed}/{name}/{i:04d}")
        for c, name in enumerate(CLASSES)
        for i in range(per_class)
    ]
    return Catalog("synthetic", "", "", list(CLASSES), entries, {f: "(generated)" for f in range(1, FOLDS + 1)})


def _loguniform(rng, lo, hi):
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _pink(rng, n):
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(f), n)
    return x / (np.std(x) + 1e-12)


def _event(cls: int, rng, sr: int, n: int) -> np.ndarray:
    """The unit-RMS-ish waveform of one event of class ``cls``, ``n`` samples."""
    t = np.arange(n) / sr
    dur = n / sr
    top = 0.45 * sr  # stay below Nyquist at any sample rate
    name = CLASSES[cls]
    if name == "tone":
        f = min(_loguniform(rng, 200, 3000), top)
        return np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    if name in ("up_chirp", "down_chirp"):
        f0 = _loguniform(rng, 150, 600)
        f1 = min(f0 * rng.uniform(3, 8), top)
        if name == "down_chirp":
            f0, f1 = f1, f0
        k = np.log(f1 / f0) / dur
        return np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k)
    if name == "noise_bursts":
        x = np.zeros(n)
        for _ in range(rng.integers(1, 5)):
            length = max(1, int(rng.uniform(0.05, 0.3) * sr))
            start = int(rng.integers(0, max(1, n - length)))
            seg = x[start : start + length]
            seg += rng.standard_normal(seg.size) * np.hanning(seg.size)
        return x * 2.0
    if name == "click_train":
        rate = rng.uniform(4, 30)
        tau = rng.uniform(0.0005, 0.002) * sr
        x = np.zeros(n)
        for c in np.arange(rng.uniform(0, 1 / rate), dur, 1 / rate):
            i = int(c * sr)
            m = min(n - i, int(8 * tau) + 1)
            x[i : i + m] += np.exp(-np.arange(m) / tau) * rng.choice([-1.0, 1.0])
        return x * 4.0
    if name == "siren":
        fa = _loguniform(rng, 400, 1500)
        fb = min(fa * rng.uniform(1.2, 1.5), top)
        period = rng.uniform(0.15, 0.5)
        high = (np.floor(t / period + rng.uniform(0, 1)) % 2).astype(bool)
        f = np.where(high, fb, fa)
        return np.sin(2 * np.pi * np.cumsum(f) / sr)
    if name == "am_tone":
        fc = min(_loguniform(rng, 300, 2000), top)
        fm, depth = rng.uniform(4, 16), rng.uniform(0.6, 1.0)
        env = 1 - depth * 0.5 * (1 + np.sin(2 * np.pi * fm * t + rng.uniform(0, 2 * np.pi)))
        return 1.5 * env * np.sin(2 * np.pi * fc * t)
    if name == "pink_noise":
        return _pink(rng, n)
    if name == "harmonic":
        f0 = _loguniform(rng, 100, 400)
        ks = np.arange(1, int(min(12, top // f0)) + 1)
        x = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k for k in ks)
        return x / np.sqrt(np.sum(0.5 / ks**2))
    # warble
    fc = min(_loguniform(rng, 400, 2000), top / 1.3)
    rate, dev = rng.uniform(3, 10), rng.uniform(0.05, 0.2) * fc
    f = fc + dev * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))
    return np.sin(2 * np.pi * np.cumsum(f) / sr)


def render(cls: int, index: int, seed: int, sample_rate: int, n_samples: int) -> np.ndarray:
    """Clip ``index`` of class ``cls``: float32 ``[n_samples]`` at ``sample_rate``."""
    rng = np.random.default_rng([seed, cls, index])
    length = max(1, int(n_samples * rng.uniform(0.4, 0.95)))
    onset = int(rng.integers(0, n_samples - length + 1))
    ev = _event(cls, rng, sample_rate, length)
    fade = min(length // 2, int(0.01 * sample_rate))
    if fade > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
        ev[:fade] *= ramp
        ev[length - fade :] *= ramp[::-1]
    level = 10 ** (rng.uniform(-26, -6) / 20)  # event RMS in dBFS
    snr_db = rng.uniform(10, 30)
    x = rng.standard_normal(n_samples) * level * 10 ** (-snr_db / 20)
    x[onset : onset + length] += ev * level
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def render_entry(entry: Entry, sample_rate: int, n_samples: int) -> np.ndarray:
    """The clip a :func:`catalog` entry names (``synthetic/seed<S>/<class>/<index>``)."""
    _, seed, _, index = entry.name.split("/")
    return render(entry.label, int(index), int(seed[len("seed"):]), sample_rate, n_samples)
