"""The log-mel front end: one :class:`FeatureSpec` and the maths that turns fixed-length audio into log-mel.

The spec is saved with every trained model and read back by the compiler and the on-device front end, so
every executor computes the same features:

1. frames: ``frames = 1 + (n_samples - win_length) // hop_length`` frames of ``win_length`` samples taken at
   ``t * hop_length`` (``center=False``, the default: no padding, easy to stream). With ``center=True`` the
   signal is first zero-padded by ``n_fft // 2`` on both sides (librosa's ``pad_mode="constant"``) and
   ``frames = 1 + n_samples // hop_length``.
2. each frame is multiplied by the periodic window and zero-padded at its end to ``n_fft``
   (the magnitude spectrum is the same as with librosa's centred window padding);
3. ``|rfft|**power`` (``n_fft // 2 + 1`` bins);
4. mel: ``mel_filterbank(spec) @ spectrum`` (triangular filters on the Slaney or HTK mel scale between
   ``fmin`` and ``fmax``, optionally Slaney area-normalised);
5. log: ``10 * log10(max(mel, log_floor))`` (dB);
6. normalisation: ``(logmel - mean) / std``.

Clip length rule (applied by the dataset loaders through :func:`fix_length`): a clip shorter than
``spec.n_samples`` is zero-padded at its end; a longer clip keeps its first ``spec.n_samples`` samples.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np

from esc2c.errors import Esc2cError

WINDOWS = ("hann", "hamming")
MEL_SCALES = ("slaney", "htk")
MEL_NORMS = ("slaney", None)
_INT_FIELDS = ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels")


@dataclass(frozen=True)
class FeatureSpec:
    """Everything that defines the log-mel input of a model (see the module docstring for the maths).

    ``clip_seconds`` fixes the clip length: shorter audio is zero-padded at the end, longer audio keeps its
    first ``n_samples`` samples. Construction validates every field and raises :class:`Esc2cError`.
    """

    sample_rate: int = 16000
    clip_seconds: float = 4.0
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 512
    window: str = "hann"
    n_mels: int = 64
    fmin: float = 0.0
    fmax: float | None = None
    mel_scale: str = "slaney"
    mel_norm: str | None = "slaney"
    center: bool = False
    power: float = 2.0
    log_floor: float = 1e-10
    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self):
        _validate(self)
        # canonical types, so equal specs have equal keys (4 and 4.0 s are the same clip length)
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
                canon = int(v) if f.name in _INT_FIELDS else float(v)
                object.__setattr__(self, f.name, canon)

    # ---- derived sizes -------------------------------------------------------------------------------------
    @property
    def n_samples(self) -> int:
        """Samples per clip: ``round(sample_rate * clip_seconds)``."""
        return int(round(self.sample_rate * self.clip_seconds))

    @property
    def frames(self) -> int:
        """Log-mel frames per clip."""
        if self.center:
            return 1 + self.n_samples // self.hop_length
        return 1 + (self.n_samples - self.win_length) // self.hop_length

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def f_max(self) -> float:
        """The upper mel edge in Hz (``fmax`` or ``sample_rate / 2``)."""
        return float(self.sample_rate) / 2 if self.fmax is None else float(self.fmax)

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_mels, frames)``: one clip's feature map."""
        return (self.n_mels, self.frames)

    # ---- (de)serialisation ---------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureSpec":
        if not isinstance(d, dict):
            raise Esc2cError(f"feature spec: expected a mapping, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise Esc2cError(f"feature spec: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(names))})")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "FeatureSpec":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise Esc2cError(f"feature spec: not valid JSON ({e})") from None
        return cls.from_dict(d)

    def with_stats(self, mean: float, std: float) -> "FeatureSpec":
        """The same spec with the post-log normalisation ``(x - mean) / std``."""
        return dataclasses.replace(self, mean=float(mean), std=float(std))

    def key(self) -> str:
        """A short stable hash of every field (12 hex digits)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]


def _validate(s: FeatureSpec) -> None:
    def bad(field, why):
        raise Esc2cError(f"feature spec field '{field}': {why} (got {getattr(s, field)!r})")

    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    def is_num(v):
        return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)

    for f in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels"):
        v = getattr(s, f)
        if not is_int(v) or v <= 0:
            bad(f, "must be a positive integer")
    for f in ("clip_seconds", "power", "log_floor", "std"):
        v = getattr(s, f)
        if not is_num(v) or v <= 0:
            bad(f, "must be a positive number")
    for f in ("fmin", "mean"):
        if not is_num(getattr(s, f)):
            bad(f, "must be a finite number")
    if s.win_length > s.n_fft:
        bad("win_length", f"must be <= n_fft ({s.n_fft})")
    if s.window not in WINDOWS:
        bad("window", f"must be one of {', '.join(WINDOWS)}")
    if s.mel_scale not in MEL_SCALES:
        bad("mel_scale", f"must be one of {', '.join(MEL_SCALES)}")
    if s.mel_norm not in MEL_NORMS:
        bad("mel_norm", "must be 'slaney' or null")
    if not isinstance(s.center, bool):
        bad("center", "must be true or false")
    if s.fmax is not None and (not is_num(s.fmax) or s.fmax > s.sample_rate / 2):
        bad("fmax", f"must be null or a number <= sample_rate/2 ({s.sample_rate / 2:g})")
    if s.fmin < 0 or s.fmin >= (s.sample_rate / 2 if s.fmax is None else s.fmax):
        bad("fmin", "must be >= 0 and below fmax")
    n = int(round(s.sample_rate * s.clip_seconds))
    if not s.center and n < s.win_length:
        bad("clip_seconds", f"gives {n} samples, fewer than one window ({s.win_length})")


# ---- tables (reused by the C front end) --------------------------------------------------------------------
def window(spec: FeatureSpec) -> np.ndarray:
    """The periodic analysis window, float32 ``[win_length]``."""
    n = np.arange(spec.win_length, dtype=np.float64)
    phase = 2.0 * np.pi * n / spec.win_length
    if spec.window == "hann":
        w = 0.5 - 0.5 * np.cos(phase)
    else:  # hamming
        w = 0.54 - 0.46 * np.cos(phase)
    return w.astype(np.float32)


_F_SP = 200.0 / 3  # Slaney: linear part, Hz per mel
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel(f, scale: str = "slaney"):
    f = np.asarray(f, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    lin = f / _F_SP
    log = _MIN_LOG_MEL + np.log(np.maximum(f, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(f >= _MIN_LOG_HZ, log, lin)


def mel_to_hz(m, scale: str = "slaney"):
    m = np.asarray(m, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    lin = _F_SP * m
    log = _MIN_LOG_HZ * np.exp(_LOGSTEP * (np.maximum(m, _MIN_LOG_MEL) - _MIN_LOG_MEL))
    return np.where(m >= _MIN_LOG_MEL, log, lin)


def _mel_filterbank64(spec: FeatureSpec) -> np.ndarray:
    bin_hz = np.linspace(0.0, spec.sample_rate / 2, spec.n_bins)
    edges_mel = np.linspace(hz_to_mel(spec.fmin, spec.mel_scale), hz_to_mel(spec.f_max, spec.mel_scale), spec.n_mels + 2)
    edges = mel_to_hz(edges_mel, spec.mel_scale)  # [n_mels + 2]: lower, centre, upper of each triangle
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bin_hz[None, :] - lo) / (mid - lo)
    falling = (hi - bin_hz[None, :]) / (hi - mid)
    fb = np.maximum(0.0, np.minimum(rising, falling))
    if spec.mel_norm == "slaney":
        fb *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return fb


def mel_filterbank(spec: FeatureSpec) -> np.ndarray:
    """Triangular mel filters, float32 ``[n_mels, n_fft // 2 + 1]`` (rows sum the power spectrum)."""
    return _mel_filterbank64(spec).astype(np.float32)


# ---- numpy front end ---------------------------------------------------------------------------------------
def fix_length(audio: np.ndarray, n: int) -> np.ndarray:
    """The clip length rule: zero-pad at the end when shorter, keep the first ``n`` samples when longer."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.shape[-1] >= n:
        return audio[..., :n]
    pad = [(0, 0)] * (audio.ndim - 1) + [(0, n - audio.shape[-1])]
    return np.pad(audio, pad)


def _check_audio(spec: FeatureSpec, shape) -> None:
    if len(shape) not in (1, 2) or shape[-1] != spec.n_samples:
        raise Esc2cError(
            f"logmel: audio must be [{spec.n_samples}] or [batch, {spec.n_samples}] samples "
            f"({spec.clip_seconds:g} s at {spec.sample_rate} Hz), got shape {tuple(shape)}"
        )


def _frames_np(spec: FeatureSpec, x: np.ndarray) -> np.ndarray:
    if spec.center:
        pad = spec.n_fft // 2
        x = np.pad(x, [(0, 0), (pad, pad)])
    v = np.lib.stride_tricks.sliding_window_view(x, spec.win_length, axis=-1)
    return v[:, :: spec.hop_length][:, : spec.frames]  # [B, frames, win]


def logmel(spec: FeatureSpec, audio: np.ndarray, batch: int = 64) -> np.ndarray:
    """Normalised log-mel, float32 ``[n_mels, frames]`` for ``[n_samples]`` audio, ``[B, n_mels, frames]`` for
    ``[B, n_samples]``. Computed in float64; audio is mono at ``spec.sample_rate`` and already fixed length."""
    audio = np.asarray(audio)
    _check_audio(spec, audio.shape)
    single = audio.ndim == 1
    x = audio[None] if single else audio
    win = window(spec).astype(np.float64)
    fb = _mel_filterbank64(spec)
    out = np.empty((x.shape[0], spec.n_mels, spec.frames), dtype=np.float32)
    for i in range(0, x.shape[0], batch):
        fr = _frames_np(spec, x[i : i + batch].astype(np.float64)) * win
        spec_c = np.fft.rfft(fr, n=spec.n_fft, axis=-1)  # [b, frames, bins]
        mag = np.abs(spec_c)
        p = mag * mag if spec.power == 2.0 else mag**spec.power
        mel = np.einsum("mk,bfk->bmf", fb, p, optimize=True)
        db = 10.0 * np.log10(np.maximum(mel, spec.log_floor))
        out[i : i + batch] = (db - spec.mean) / spec.std
    return out[0] if single else out


# ---- torch front end ---------------------------------------------------------------------------------------
def logmel_torch(spec: FeatureSpec, audio):
    """:func:`logmel` in torch (any device, float32 maths): ``[n]`` -> ``[n_mels, frames]``,
    ``[B, n]`` -> ``[B, n_mels, frames]``."""
    import torch  # lazy: the numpy front end (C checks, verify) runs without loading torch

    _check_audio(spec, tuple(audio.shape))
    single = audio.dim() == 1
    x = (audio[None] if single else audio).to(torch.float32)
    if spec.center:
        pad = spec.n_fft // 2
        x = torch.nn.functional.pad(x, (pad, pad))
    fr = x.unfold(-1, spec.win_length, spec.hop_length)[:, : spec.frames]
    fr = fr * torch.from_numpy(window(spec)).to(x.device)
    mag = torch.fft.rfft(fr, n=spec.n_fft, dim=-1).abs()
    p = mag * mag if spec.power == 2.0 else mag.pow(spec.power)
    fb = torch.from_numpy(mel_filterbank(spec)).to(x.device)
    mel = torch.einsum("mk,bfk->bmf", fb, p)
    db = 10.0 * torch.log10(torch.clamp(mel, min=spec.log_floor))
    out = (db - spec.mean) / spec.std
    return out[0] if single else out
