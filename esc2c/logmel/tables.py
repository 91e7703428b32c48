"""The C front end's generated files, from a :class:`~esc2c.features.FeatureSpec` and the model's input
quantization: ``esc2c_frontend_config.h`` (sizes, normalisation, quantization, FFT size) and
``esc2c_frontend_tables.c`` (window and sparse mel weights), rendered from templates/frontend_*.j2.

The window and the mel filterbank come from :func:`esc2c.features.window` and
:func:`esc2c.features.mel_filterbank`, the functions the training features are computed with. The C front
end supports what streams: ``center=False``, ``power`` 1 or 2, ``n_fft`` a power of two from 32 to 4096
(the sizes CMSIS-DSP's arm_rfft_fast_f32 has tables for).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from esc2c import __version__
from esc2c import features as fe
from esc2c import templating
from esc2c.errors import Esc2cError
from esc2c.features import FeatureSpec

RFFT_SIZES = (32, 64, 128, 256, 512, 1024, 2048, 4096)
CONFIG_H = "esc2c_frontend_config.h"
TABLES_C = "esc2c_frontend_tables.c"


def check_spec(spec: FeatureSpec) -> None:
    """Raise :class:`Esc2cError` naming the field when the C front end cannot compute ``spec``."""
    if spec.center:
        raise Esc2cError("feature spec field 'center': the C front end streams frames and needs center=false "
                         "(got true)")
    if spec.power not in (1.0, 2.0):
        raise Esc2cError(f"feature spec field 'power': the C front end computes power 1 or 2 (got {spec.power!r})")
    if spec.n_fft not in RFFT_SIZES:
        raise Esc2cError(f"feature spec field 'n_fft': the C front end's FFT (CMSIS-DSP arm_rfft_fast_f32) needs "
                         f"one of {', '.join(map(str, RFFT_SIZES))} (got {spec.n_fft})")
    if spec.n_bins > 65535 or spec.n_samples > 2**31 - 1:
        raise Esc2cError("feature spec: too large for the C front end's tables")


def buffer_length(spec: FeatureSpec) -> int:
    """Samples the streaming ring holds: whole hops covering one window."""
    return math.ceil(spec.win_length / spec.hop_length) * spec.hop_length


@dataclass(frozen=True)
class Tables:
    window: np.ndarray       # float32 [win_length], window / 32768
    mel_start: np.ndarray    # int [n_mels], first bin of each band
    mel_len: np.ndarray      # int [n_mels], bins in each band
    mel_offset: np.ndarray   # int [n_mels], index of each band's first weight
    mel_weights: np.ndarray  # float32 [sum(mel_len)]


def make_tables(spec: FeatureSpec) -> Tables:
    check_spec(spec)
    win = (fe.window(spec) * np.float32(1.0 / 32768.0)).astype(np.float32)  # exact: a power of two
    fb = fe.mel_filterbank(spec)
    starts, lens, offs, weights = [], [], [], []
    for row in fb:
        nz = np.flatnonzero(row)
        lo, hi = (int(nz[0]), int(nz[-1]) + 1) if nz.size else (0, 0)
        starts.append(lo)
        lens.append(hi - lo)
        offs.append(sum(lens[:-1]))
        weights.append(row[lo:hi])
    w = np.concatenate(weights).astype(np.float32)
    if w.size == 0:
        raise Esc2cError("feature spec: every mel band is empty (check fmin, fmax and n_fft)")
    if w.size > 65535:
        raise Esc2cError(f"feature spec: {w.size} mel weights, more than the C tables' 16-bit offsets allow")
    return Tables(win, np.array(starts), np.array(lens), np.array(offs), w)


def _f32(v) -> str:
    """A C float literal that reads back as exactly this float32 (9 significant digits round-trip)."""
    s = f"{float(np.float32(v)):.9g}"
    return s if any(c in s for c in ".e") else s + ".0"


def _floats(values, per_line: int = 8) -> str:
    v = [_f32(x) + "f" for x in np.asarray(values, dtype=np.float32).ravel()]
    return ",\n".join("    " + ", ".join(v[i:i + per_line]) for i in range(0, len(v), per_line))


def _ints(values, per_line: int = 16) -> str:
    v = [str(int(x)) for x in np.asarray(values).ravel()]
    return ",\n".join("    " + ", ".join(v[i:i + per_line]) for i in range(0, len(v), per_line))


def render(spec: FeatureSpec, input_scale: float, input_zero_point: int, source: str = "model") -> dict[str, str]:
    """{file name: text} of the generated front-end files for ``spec`` feeding a model whose int8 input has
    ``input_scale`` / ``input_zero_point``."""
    if not (np.isfinite(input_scale) and input_scale > 0):
        raise Esc2cError(f"front end: the model's input scale must be a positive number (got {input_scale!r})")
    if not -128 <= int(input_zero_point) <= 127:
        raise Esc2cError(f"front end: the model's input zero point must be an int8 (got {input_zero_point!r})")
    t = make_tables(spec)
    ctx = {
        "version": __version__, "source": source, "spec_key": spec.key(), "spec_json": spec.to_json(),
        "sample_rate": spec.sample_rate, "n_samples": spec.n_samples, "clip_seconds": f"{spec.clip_seconds:g}",
        "n_fft": spec.n_fft, "win_length": spec.win_length, "hop_length": spec.hop_length,
        "buf_length": buffer_length(spec), "n_bins": spec.n_bins, "n_mels": spec.n_mels, "frames": spec.frames,
        "n_weights": int(t.mel_weights.size), "power": int(spec.power), "log_floor": _f32(spec.log_floor),
        "mean": _f32(spec.mean), "std": _f32(spec.std), "input_scale": _f32(input_scale),
        "input_zp": int(input_zero_point), "window_name": spec.window,
        "window_body": _floats(t.window), "start_body": _ints(t.mel_start), "len_body": _ints(t.mel_len),
        "offset_body": _ints(t.mel_offset), "weights_body": _floats(t.mel_weights),
    }
    return {CONFIG_H: templating.render("frontend_config.h.j2", **ctx),
            TABLES_C: templating.render("frontend_tables.c.j2", **ctx)}
