"""Decode one audio file to float32 mono at a given sample rate (soundfile + scipy's polyphase resampler)."""
from __future__ import annotations

import math

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from esc2c.errors import Esc2cError


def read_audio(path: str, sample_rate: int, max_seconds: float | None = None) -> np.ndarray:
    """The file's audio as float32 mono (channels averaged) at ``sample_rate``, at most ``max_seconds`` long.

    Resampling uses ``scipy.signal.resample_poly`` with the reduced ratio ``sample_rate / file_rate``.
    An undecodable or empty file raises :class:`Esc2cError` naming it.
    """
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, OSError) as e:
        raise Esc2cError(f"{path}: cannot decode audio ({e})") from None
    if data.shape[0] == 0:
        raise Esc2cError(f"{path}: audio file has no samples")
    x = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise Esc2cError(f"{path}: {bad.size} audio sample(s) are NaN or infinite (first at sample {bad[0]})")
    if max_seconds is not None:
        x = x[: max(1, int(round(max_seconds * rate)))]
    if rate != sample_rate:
        g = math.gcd(int(rate), int(sample_rate))
        x = resample_poly(x, sample_rate // g, int(rate) // g)
    return np.ascontiguousarray(x, dtype=np.float32)
