"""The training recipe: augmentation of log-mel batches, soft targets, the learning-rate schedule, and the
training loop using them (resumable, teacher on the augmented batch)."""
import math

import numpy as np
import pytest
import torch

from esc2c.compress.augment import AugmentConfig, augment_batch, soft_labels, targets
from esc2c.compress.config import DATASET_FEATURES, NO_INPUT_AUGMENT, load_config
from esc2c.compress.schedule import lr_factor, make_scheduler
from esc2c.compress.train import TrainConfig, evaluate, train
from esc2c.errors import Esc2cError
from esc2c.models.registry import build_model

from _bands import IN, Bands



def _x(n=8, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).normal(0, 1, (n, *IN)).astype(np.float32)) + 3.0


def test_no_augmentation_is_the_identity():
    x, y = _x(), torch.arange(8) % 4
    xa, mix = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(0))
    assert torch.equal(xa, x) and mix is None
    assert targets(y, 4, AugmentConfig(), None) is y            # integer labels: the plain loss path


def test_time_shift_rolls_each_clip_within_its_bound():
    x = _x()
    xa, _ = augment_batch(x, AugmentConfig(time_shift=0.25), torch.Generator().manual_seed(1))
    shifts = set()
    for a, b in zip(x, xa):
        s = [k for k in range(-6, 7) if torch.equal(torch.roll(a, k, dims=2), b)]   # 0.25 * 24 frames = 6
        assert len(s) == 1
        shifts.add(s[0])
    assert len(shifts) > 2                                       # per-clip shifts, not one for the batch


@pytest.mark.parametrize("dim, field", [(2, "freq"), (3, "time")])
def test_specaugment_masks_zero_bounded_spans(dim, field):
    x = _x(64)
    cfg = AugmentConfig(**{f"{field}_masks": 1, f"{field}_mask": 0.25})
    xa, _ = augment_batch(x, cfg, torch.Generator().manual_seed(2))
    size = x.shape[dim]
    widths = []
    for a, b in zip(x, xa):
        zero = (b == 0).all(dim=1 if dim == 3 else 2).squeeze(0) if dim == 2 else (b == 0).all(dim=1).squeeze(0)
        idx = torch.nonzero(zero).flatten().tolist()
        if idx:
            assert idx == list(range(idx[0], idx[-1] + 1))       # one contiguous span
        widths.append(len(idx))
        keep = ~zero
        sel = (slice(None), keep) if dim == 2 else (slice(None), slice(None), keep)
        assert torch.equal(a[sel], b[sel])                       # the rest untouched
    assert max(widths) <= math.floor(0.25 * size) and max(widths) > 0


def test_gain_shifts_each_clip_by_one_bounded_level():
    x = _x(64)
    cfg = AugmentConfig(gain_db=6.0, db_scale=0.05)             # 6 dB = 0.3 feature units
    xa, mix = augment_batch(x, cfg, torch.Generator().manual_seed(4))
    assert mix is None
    d = xa - x
    per_clip = d.mean(dim=(1, 2, 3))
    torch.testing.assert_close(d, per_clip.view(-1, 1, 1, 1).expand_as(d))   # one offset per clip, everywhere
    assert per_clip.abs().max() <= 0.3 + 1e-6 and per_clip.abs().max() > 0.2
    assert per_clip.min() < 0 < per_clip.max() and len(set(per_clip.tolist())) == 64


def test_equaliser_is_smooth_bounded_and_per_clip():
    x = _x(64)
    cfg = AugmentConfig(eq_db=10.0, eq_points=2, db_scale=0.1)   # up to 1 feature unit either way
    xa, _ = augment_batch(x, cfg, torch.Generator().manual_seed(5))
    d = xa - x
    torch.testing.assert_close(d, d[..., :1].expand_as(d))     # the same curve in every frame of a clip
    curve = d[:, 0, :, 0]                                        # [clips, mels]
    assert curve.abs().max() <= 1.0 + 1e-5
    # piecewise linear through 4 knots: at most 3 slopes per clip, so the second difference is zero almost
    # everywhere (nonzero only next to the 2 inner knots)
    second = (curve[:, 2:] - 2 * curve[:, 1:-1] + curve[:, :-2]).abs() > 1e-4
    assert second.sum(1).max() <= 4
    assert (curve.max(1).values - curve.min(1).values).mean() > 0.3   # it does colour the spectrum
    assert len({round(float(c[0]), 5) for c in curve}) == 64           # one curve per clip
    # seeded like the rest: the same generator state gives the same batch
    xb, _ = augment_batch(x, cfg, torch.Generator().manual_seed(5))
    assert torch.equal(xa, xb)


def test_level_augmentation_follows_the_feature_spec_and_no_augment():
    from esc2c.features import FeatureSpec
    c = load_config(None, {"gain_db": 6, "eq_db": 3})
    a = c.augment(FeatureSpec().with_stats(-40.0, 20.0))
    assert a.active and a.db_scale == pytest.approx(1 / 20.0) and (a.gain_db, a.eq_db) == (6.0, 3.0)
    assert c.augment().db_scale == 1.0
    off = load_config(None, {"preset": "augment", "gain_db": 6, "eq_db": 3, **NO_INPUT_AUGMENT}).augment()
    assert not off.active and off.label_smoothing == 0.1          # --no-augment: inputs untouched


def test_mixup_and_label_smoothing_targets():
    x, y = _x(16), torch.arange(16) % 4
    cfg = AugmentConfig(mixup_alpha=0.4, label_smoothing=0.1)
    xa, mix = augment_batch(x, cfg, torch.Generator().manual_seed(3))
    assert mix is not None and 0.5 <= mix.lam <= 1.0
    torch.testing.assert_close(xa, mix.lam * x + (1 - mix.lam) * x[mix.perm])
    t = targets(y, 4, cfg, mix)
    torch.testing.assert_close(t.sum(1), torch.ones(16))
    s = soft_labels(y, 4, 0.1)
    assert torch.allclose(s.max(1).values, torch.full((16,), 0.925)) and torch.allclose(s.min(1).values,
                                                                                        torch.full((16,), 0.025))
    torch.testing.assert_close(t, mix.lam * s + (1 - mix.lam) * s[mix.perm])
    # the same generator state gives the same batch
    xb, mix2 = augment_batch(x, cfg, torch.Generator().manual_seed(3))
    assert torch.equal(xa, xb) and mix2.lam == mix.lam


def _ramp(n, dim):
    """n clips of shape IN whose value is the bin index along ``dim`` (2 = mel, 3 = time)."""
    size = IN[dim - 1]
    shape = [1, 1, 1, 1]
    shape[dim] = size
    return torch.arange(size, dtype=torch.float32).view(shape).expand(n, *IN).contiguous()


def test_pitch_shift_moves_each_clip_along_the_mels_by_a_bounded_amount():
    x = _ramp(64, 2)                                             # x[m] = m
    mels = IN[1]
    xa, _ = augment_batch(x, AugmentConfig(freq_shift=0.25), torch.Generator().manual_seed(6))
    assert torch.equal(xa, xa[..., :1].expand_as(xa))            # the same shift in every frame
    col = xa[:, 0, :, 0]                                         # [clips, mels]
    shifts = []
    for c in col:
        s = -(c - torch.arange(mels))                            # out[m] = x[m - s] = m - s away from the edges
        inner = (torch.arange(mels) - s > 0) & (torch.arange(mels) - s < mels - 1)
        torch.testing.assert_close(s[inner], s[inner][:1].expand(int(inner.sum())))  # one shift per clip
        assert c.min() >= 0 and c.max() <= mels - 1              # the edge bins repeat past the ends
        shifts.append(float(s[inner][0]))
    assert max(abs(v) for v in shifts) <= 0.25 * mels + 1e-4
    assert min(shifts) < -1 and max(shifts) > 1 and len({round(v, 4) for v in shifts}) == 64
    # an integer shift is an exact move of whole bins
    from esc2c.compress.augment import _resample
    y = _x(2)
    moved = _resample(y, 2, torch.arange(float(mels)).view(1, mels).expand(2, -1) - 2)
    assert torch.equal(moved[:, :, 2:], y[:, :, :-2]) and torch.equal(moved[:, :, 1], y[:, :, 0])


def test_time_stretch_resamples_each_clip_from_its_start_at_a_bounded_rate():
    x = _ramp(64, 3)                                             # x[t] = t
    frames = IN[2]
    xa, _ = augment_batch(x, AugmentConfig(time_stretch=0.2), torch.Generator().manual_seed(7))
    assert torch.equal(xa, xa[:, :, :1].expand_as(xa))           # the same rate in every mel bin
    row = xa[:, 0, 0, :]                                         # [clips, frames]
    assert torch.equal(row[:, 0], torch.zeros(64))               # the clip's start stays put
    t = torch.arange(1, frames, dtype=torch.float32)
    rates = []
    for r in row:
        inner = r[1:] < frames - 1                               # past the end: the last frame repeats
        rate = r[1:][inner] / t[inner]
        torch.testing.assert_close(rate, rate[:1].expand_as(rate))
        assert torch.equal(r[1:][~inner], torch.full((int((~inner).sum()),), float(frames - 1)))
        rates.append(float(rate[0]))
    assert 0.8 - 1e-5 <= min(rates) < 0.95 and 1.05 < max(rates) <= 1.2 + 1e-5


def test_pitch_and_tempo_count_as_input_changes():
    assert AugmentConfig(freq_shift=0.05).active and AugmentConfig(time_stretch=0.1).active
    off = load_config(None, {"freq_shift": 0.05, "time_stretch": 0.2, **NO_INPUT_AUGMENT}).augment()
    assert not off.active
    on = load_config(None, {"freq_shift": 0.05, "time_stretch": 0.2}).augment()
    assert (on.freq_shift, on.time_stretch) == (0.05, 0.2)


@pytest.mark.parametrize("field, value", [("time_shift", 1.5), ("freq_masks", -1), ("mixup_alpha", -0.1),
                                          ("label_smoothing", 1.0), ("gain_db", -1.0), ("eq_db", 50.0),
                                          ("eq_points", 17), ("freq_shift", 1.5), ("time_stretch", 0.6)])
def test_bad_augmentation_is_named(field, value):
    with pytest.raises(Esc2cError, match=field):
        AugmentConfig(**{field: value})
    with pytest.raises(Esc2cError, match=field):
        load_config(None, {field: value})


def test_cosine_schedule_with_warmup():
    f = [lr_factor(s, 100, "cosine", 10) for s in range(100)]
    assert f[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert f[10] == pytest.approx(1.0) and f[-1] == pytest.approx(0.01)
    assert all(a >= b for a, b in zip(f[10:], f[11:]))           # monotone after the warm-up
    assert lr_factor(50, 100, "constant", 10) == 1.0
    with pytest.raises(Esc2cError, match="schedule"):
        lr_factor(0, 10, "step")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
    sched = make_scheduler(opt, 20, "cosine", 4)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.5 * lr_factor(s, 20, "cosine", 4) for s in range(20)])


def test_dataset_feature_defaults_and_presets(tmp_path):
    us = load_config(None, {"dataset": "urbansound8k", "data_dir": "somewhere"}).feature_spec()
    assert (us.clip_seconds, us.n_mels) == (4.0, 40)              # whole 4 s clips, not the synthetic set's
    assert load_config(None, {"dataset": "esc50", "data_dir": "x"}).feature_spec().clip_seconds == 5.0
    assert load_config(None).feature_spec().n_mels == DATASET_FEATURES["synthetic"]["n_mels"]
    assert load_config(None, {"dataset": "urbansound8k", "data_dir": "x",
                              "features": {"n_mels": 64}}).feature_spec().clip_seconds == 4.0
    d = load_config(None)               # the default: the plain recipe, students at 3x the rate
    assert not d.augment().active and not d.augment().soft_targets and d.lr_schedule == "constant"
    assert d.student_lr_factor == 3.0
    a = load_config(None, {"preset": "augment"})
    assert a.augment().active and a.augment().soft_targets and a.lr_schedule == "cosine"
    assert load_config(None, {"preset": "paper"}).student_lr_factor == 1.0
    # real audio defaults to the robust recipe: level + equaliser changes, cosine, last epoch
    for ds in ("urbansound8k", "esc50"):
        r = load_config(None, {"dataset": ds, "data_dir": "x"})
        assert r.preset == "robust" and (r.gain_db, r.eq_db, r.lr_schedule, r.epoch_selection) == (
            6.0, 6.0, "cosine", "last") and r.augment().active
        assert load_config(None, {"dataset": ds, "data_dir": "x", "preset": "esc2c"}).gain_db == 0.0
    g = tmp_path / "us.yaml"
    g.write_text("dataset: urbansound8k\ndata_dir: x\npreset: paper\n")
    assert load_config(str(g)).preset == "paper" and load_config(str(g)).gain_db == 0.0   # the file's preset
    assert d.preset == "esc2c"
    f = tmp_path / "c.yaml"
    f.write_text("preset: augment\nmixup_alpha: 0.3\n")
    c = load_config(str(f))                                       # the file overrides its preset
    assert c.mixup_alpha == 0.3 and c.lr_schedule == "cosine" and c.freq_masks == 2
    assert load_config(str(f), {"preset": "paper"}).freq_masks == 0
    with pytest.raises(Esc2cError, match="preset"):
        load_config(None, {"preset": "fancy"})
    assert d.epoch_selection == "best" and load_config(None, {"epoch_selection": "last"}).epoch_selection == "last"
    with pytest.raises(Esc2cError, match="config field 'epoch_selection': must be one of best, last"):
        load_config(None, {"epoch_selection": "first"})
    assert d.ema_decay == 0.0 and load_config(None, {"ema_decay": 0.995}).ema_decay == 0.995
    with pytest.raises(Esc2cError, match="config field 'ema_decay': must be in"):
        load_config(None, {"ema_decay": 1.0})
    assert load_config(None, {"arch": "vgg11", "dropout": 0.5}).dropout == 0.5
    with pytest.raises(Esc2cError, match="config field 'dropout': the small head has no hidden layers"):
        load_config(None, {"dropout": 0.5})


RECIPE = dict(augment=AugmentConfig(time_shift=0.2, freq_masks=1, freq_mask=0.1, time_masks=1, time_mask=0.1,
                                    mixup_alpha=0.2, label_smoothing=0.1),
              schedule="cosine", warmup_epochs=0.5, batch_size=16, progress=False, verbose=False, seed=2)


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model("small", 4, width=0.5, in_shape=IN)


def test_recipe_learns_and_resumes_bit_identically(tmp_path):
    tr, va = Bands(96, 0), Bands(48, 1)
    cfg = TrainConfig(epochs=3, **RECIPE)
    ref = train(_model(), tr, va, "ce_aux", cfg=cfg)
    assert ref.best_val_acc >= 0.5                               # chance is 0.25

    class Kill(Exception):
        pass

    def kill(epoch, row):
        if epoch == 1:
            raise Kill
    ck = tmp_path / "last.pt"
    with pytest.raises(Kill):
        train(_model(), tr, va, "ce_aux", cfg=cfg, checkpoint=ck, on_epoch_end=kill)
    res = train(_model(seed=5), tr, va, "ce_aux", cfg=cfg, checkpoint=ck)
    a, b = ref.model.state_dict(), res.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)               # augmentation and schedule resume exactly


def test_teacher_sees_the_augmented_batch():
    tr = Bands(32, 0)
    teacher = _model(3).eval()
    seen = []
    real = teacher.forward_all

    def spy(x):
        seen.append(x.clone())
        return real(x)
    teacher.forward_all = spy
    train(_model(), tr, None, "kd", teacher=teacher, cfg=TrainConfig(epochs=1, **RECIPE))
    assert len(seen) == 2 and all(len(s) == 16 for s in seen)    # once per batch, not a cache of the raw set
    raw = torch.from_numpy(tr.x)
    assert not any(torch.equal(s[0], r) for s in seen for r in raw)
    seen.clear()
    train(_model(), tr, None, "kd", teacher=teacher, cfg=TrainConfig(epochs=1, batch_size=16, progress=False))
    assert len(seen) == 1 and torch.equal(seen[0], raw)          # plain recipe: one cached pass over the set


def test_evaluate_is_never_augmented():
    va = Bands(32, 1)
    m = _model()
    assert evaluate(m, va)["acc"] == evaluate(m, va)["acc"]
