"""On-the-fly augmentation of log-mel batches, and the soft targets it implies.

Applied by the training loop to every training batch (never to validation or calibration data), on the
normalised log-mel ``x [B, 1, n_mels, frames]``:

1. time shift: each clip is rolled along time by a random number of frames, up to ``time_shift`` of the clip
   (both directions). Sounds in UrbanSound8K / ESC-50 start anywhere in the clip, and short clips are
   zero-padded at their end, so a roll is a plausible clip. The model ends in a global average pool, so the
   roll changes only what the convolutions see at the wrap point.
2. level and colour (recording conditions): each clip's whole log-mel is shifted by a random gain of up to
   ``gain_db`` dB either way (the microphone's distance and gain), and by a random smooth equaliser of up to
   ``eq_db`` dB either way (the microphone's and the room's response, after FilterAugment, Nam et al. 2022):
   gains drawn at ``eq_points`` random mel positions plus both edges, linearly interpolated between them.
   dB become normalised units through ``db_scale`` (``1 / spec.std``, set from the feature spec).
3. pitch and tempo (Salamon & Bello 2017's pitch shifting and time stretching, done on the log-mel): each
   clip is moved along the mel axis by a random, fractional number of bins, up to ``freq_shift`` of the mel
   bins either way (the mel scale is close to logarithmic above ~1 kHz, so a shift there is a pitch change), and
   resampled along time at a random rate in ``[1 - time_stretch, 1 + time_stretch]`` (out[t] = x[rate * t],
   from the clip's start), both by linear interpolation with the edge bin / last frame repeated past the
   ends.
4. SpecAugment (Park et al. 2019, without time warping): ``freq_masks`` bands of up to ``freq_mask`` of the mel
   bins and ``time_masks`` spans of up to ``time_mask`` of the frames are set to 0, the training mean of the
   normalised features.
5. mixup (Zhang et al. 2018): the batch is mixed with a shuffled copy of itself, ``lam ~ Beta(alpha, alpha)``
   per batch (``lam >= 0.5``, so the first clip dominates), inputs and targets alike.

Targets become class distributions: one-hot labels smoothed by ``label_smoothing`` (``1 - eps`` on the class,
``eps / C`` spread over all), then mixed. ``torch.nn.functional.cross_entropy`` takes such targets directly,
so every loss of :mod:`esc2c.compress.losses` trains on them unchanged; a distillation teacher is run on the
same augmented batch, so its soft targets describe what the student sees.

Everything draws from one ``torch.Generator`` that the loop seeds per epoch, so a resumed run augments
exactly like an uninterrupted one.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from esc2c.errors import Esc2cError


@dataclass(frozen=True)
class AugmentConfig:
    time_shift: float = 0.0      # max roll as a fraction of the frames (0 = off)
    freq_masks: int = 0          # SpecAugment frequency masks per clip
    freq_mask: float = 0.0       # max width of each, as a fraction of the mel bins
    time_masks: int = 0          # SpecAugment time masks per clip
    time_mask: float = 0.0       # max width of each, as a fraction of the frames
    mixup_alpha: float = 0.0     # Beta(alpha, alpha) mixing (0 = off)
    label_smoothing: float = 0.0
    gain_db: float = 0.0         # random level change per clip, up to this many dB either way (0 = off)
    eq_db: float = 0.0           # random smooth equaliser per clip, up to this many dB either way (0 = off)
    eq_points: int = 3           # the equaliser's random inner control points along the mel axis
    freq_shift: float = 0.0      # max shift along the mel axis, as a fraction of the mel bins (0 = off)
    time_stretch: float = 0.0    # max deviation of the time resampling rate from 1 (0 = off)
    db_scale: float = 1.0        # normalised feature units per dB (1 / the feature spec's std)

    def __post_init__(self):
        for name in ("time_shift", "freq_mask", "time_mask", "freq_shift"):
            v = getattr(self, name)
            if not 0.0 <= float(v) <= 1.0:
                raise Esc2cError(f"augmentation field {name!r} must be a fraction in [0, 1] (got {v})")
        for name in ("freq_masks", "time_masks"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise Esc2cError(f"augmentation field {name!r} must be an integer >= 0 (got {v!r})")
        if not 0.0 <= float(self.mixup_alpha) <= 10.0:
            raise Esc2cError(f"augmentation field 'mixup_alpha' must be in [0, 10] (got {self.mixup_alpha})")
        for name in ("gain_db", "eq_db"):
            v = getattr(self, name)
            if not 0.0 <= float(v) <= 40.0:
                raise Esc2cError(f"augmentation field {name!r} must be in [0, 40] dB (got {v})")
        if not 0.0 <= float(self.time_stretch) <= 0.5:
            raise Esc2cError(f"augmentation field 'time_stretch' must be in [0, 0.5] (got {self.time_stretch})")
        if not isinstance(self.eq_points, int) or isinstance(self.eq_points, bool) or not 0 <= self.eq_points <= 16:
            raise Esc2cError(f"augmentation field 'eq_points' must be an integer in [0, 16] (got {self.eq_points!r})")
        if not (math.isfinite(float(self.db_scale)) and float(self.db_scale) > 0):
            raise Esc2cError(f"augmentation field 'db_scale' must be a positive number (got {self.db_scale})")
        if not 0.0 <= float(self.label_smoothing) < 1.0:
            raise Esc2cError(f"augmentation field 'label_smoothing' must be in [0, 1) (got {self.label_smoothing})")

    @property
    def active(self) -> bool:
        """True when the inputs change (then a teacher must see each augmented batch, not a cache)."""
        return bool(self.time_shift > 0 or (self.freq_masks and self.freq_mask > 0)
                    or (self.time_masks and self.time_mask > 0) or self.mixup_alpha > 0
                    or self.gain_db > 0 or self.eq_db > 0 or self.freq_shift > 0 or self.time_stretch > 0)

    @property
    def soft_targets(self) -> bool:
        return self.mixup_alpha > 0 or self.label_smoothing > 0

    def to_dict(self) -> dict:
        return asdict(self)


def _masks(x: torch.Tensor, dim: int, count: int, max_frac: float, gen: torch.Generator) -> torch.Tensor:
    """x with ``count`` random spans per clip along ``dim`` (2 = mel, 3 = time) set to 0."""
    n, size = x.shape[0], x.shape[dim]
    max_w = int(math.floor(max_frac * size))
    if count == 0 or max_w < 1:
        return x
    pos = torch.arange(size).view(1, size)
    keep = torch.ones(n, size, dtype=torch.bool)
    for _ in range(count):
        w = torch.randint(0, max_w + 1, (n, 1), generator=gen)
        start = (torch.rand(n, 1, generator=gen) * (size - w + 1).float()).long()
        keep &= ~((pos >= start) & (pos < start + w))
    shape = [n, 1, 1, 1]
    shape[dim] = size
    return x * keep.view(shape).to(x.dtype)


def _roll(x: torch.Tensor, max_frac: float, gen: torch.Generator) -> torch.Tensor:
    n, frames = x.shape[0], x.shape[3]
    max_s = int(math.floor(max_frac * frames))
    if max_s < 1:
        return x
    shift = torch.randint(-max_s, max_s + 1, (n,), generator=gen)
    idx = (torch.arange(frames).view(1, frames) - shift.view(n, 1)) % frames      # out[t] = x[t - shift]
    return torch.gather(x, 3, idx.view(n, 1, 1, frames).expand(-1, x.shape[1], x.shape[2], -1))


def _level(x: torch.Tensor, gain: float, eq: float, points: int, scale: float,
           gen: torch.Generator) -> torch.Tensor:
    """x plus a per-clip gain (uniform in [-gain, gain] dB) and a per-clip piecewise-linear equaliser over the
    mel axis (uniform in [-eq, eq] dB at both edges and at ``points`` random inner positions)."""
    n, mels = x.shape[0], x.shape[2]
    off = torch.zeros(n, mels)
    if gain > 0:
        off += (torch.rand(n, 1, generator=gen) * 2 - 1) * gain
    if eq > 0 and mels > 1:
        inner = torch.sort(torch.rand(n, points, generator=gen), dim=1).values * (mels - 1)
        knots = torch.cat([torch.zeros(n, 1), inner, torch.full((n, 1), float(mels - 1))], 1)   # [n, points + 2]
        gains = (torch.rand(n, points + 2, generator=gen) * 2 - 1) * eq
        pos = torch.arange(mels, dtype=torch.float32).view(1, mels).expand(n, -1).contiguous()
        hi = torch.searchsorted(knots, pos, right=True).clamp(1, points + 1)          # knots[hi-1] <= pos < knots[hi]
        k0, k1 = knots.gather(1, hi - 1), knots.gather(1, hi)
        g0, g1 = gains.gather(1, hi - 1), gains.gather(1, hi)
        t = ((pos - k0) / (k1 - k0).clamp_min(1e-6)).clamp(0, 1)
        off += g0 + t * (g1 - g0)
    return x + (off * scale).view(n, 1, mels, 1).to(x.dtype)


def _resample(x: torch.Tensor, dim: int, src: torch.Tensor) -> torch.Tensor:
    """x read along ``dim`` (2 = mel, 3 = time) at per-clip fractional positions ``src [n, size]``, by linear
    interpolation between the two nearest bins; positions outside the axis take its edge bin (size >= 2)."""
    n, size = x.shape[0], x.shape[dim]
    src = src.clamp(0, size - 1)
    lo = src.floor().long().clamp(max=size - 2)                  # the last bin is reached with weight 1
    hi = lo + 1
    w = (src - lo.to(src.dtype)).to(x.dtype)
    shape = [n, 1, 1, 1]
    shape[dim] = size
    other = list(x.shape)
    other[dim] = size

    def take(idx):
        return torch.gather(x, dim, idx.view(shape).expand(other))

    return torch.lerp(take(lo), take(hi), w.view(shape).expand(other))


def _pitch_tempo(x: torch.Tensor, shift: float, stretch: float, gen: torch.Generator) -> torch.Tensor:
    """x moved along the mel axis by up to ``shift`` of its bins either way, then resampled along time at a rate
    in ``[1 - stretch, 1 + stretch]`` (see the module docstring, step 3)."""
    n, mels, frames = x.shape[0], x.shape[2], x.shape[3]
    if shift > 0 and mels > 1:
        s = (torch.rand(n, 1, generator=gen) * 2 - 1) * shift * mels                  # out[m] = x[m - s]
        x = _resample(x, 2, torch.arange(mels, dtype=torch.float32).view(1, mels) - s)
    if stretch > 0 and frames > 1:
        rate = 1 + (torch.rand(n, 1, generator=gen) * 2 - 1) * stretch                 # out[t] = x[rate * t]
        x = _resample(x, 3, torch.arange(frames, dtype=torch.float32).view(1, frames) * rate)
    return x


def soft_labels(y: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    t = F.one_hot(y, num_classes).float()
    return t * (1.0 - smoothing) + smoothing / num_classes


@dataclass
class Mix:
    """How a batch was mixed: ``x = lam * x + (1 - lam) * x[perm]``."""
    lam: float
    perm: torch.Tensor


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> tuple[torch.Tensor, Mix | None]:
    """The augmented training batch (on the CPU) and its mixup, if any (pass it to :func:`targets`)."""
    if cfg.time_shift > 0:
        x = _roll(x, cfg.time_shift, gen)
    if cfg.gain_db > 0 or cfg.eq_db > 0:
        x = _level(x, cfg.gain_db, cfg.eq_db, cfg.eq_points, cfg.db_scale, gen)
    if cfg.freq_shift > 0 or cfg.time_stretch > 0:
        x = _pitch_tempo(x, cfg.freq_shift, cfg.time_stretch, gen)
    x = _masks(x, 2, cfg.freq_masks, cfg.freq_mask, gen)
    x = _masks(x, 3, cfg.time_masks, cfg.time_mask, gen)
    if cfg.mixup_alpha <= 0 or len(x) < 2:
        return x, None
    lam = _beta(cfg.mixup_alpha, gen)
    mix = Mix(max(lam, 1.0 - lam), torch.randperm(len(x), generator=gen))
    return mix.lam * x + (1.0 - mix.lam) * x[mix.perm], mix


def targets(y: torch.Tensor, num_classes: int, cfg: AugmentConfig, mix: Mix | None) -> torch.Tensor:
    """The training targets for labels ``y``: the labels themselves when nothing softens them, else class
    distributions ``[B, num_classes]`` (smoothed, then mixed like the inputs)."""
    if not cfg.soft_targets:
        return y
    t = soft_labels(y, num_classes, cfg.label_smoothing)
    if mix is not None:
        t = mix.lam * t + (1.0 - mix.lam) * t[mix.perm.to(t.device)]
    return t


def _beta(alpha: float, gen: torch.Generator) -> float:
    """One Beta(alpha, alpha) draw, seeded from ``gen`` (torch's Beta sampler takes no generator)."""
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
    return float(np.random.default_rng(seed).beta(alpha, alpha))
