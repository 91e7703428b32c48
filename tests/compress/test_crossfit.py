"""Cross-fitted teachers (esc2c.compress.crossfit): recordings dealt whole into balanced parts, each training
row scored by its own part's teacher only, and the training loop handing the teacher the batch's rows, with
and without input augmentation."""
import numpy as np
import pytest
import torch

from esc2c.compress.augment import AugmentConfig
from esc2c.compress.crossfit import CrossFitTeacher, recording_parts
from esc2c.compress.train import TrainConfig, train
from esc2c.errors import Esc2cError
from esc2c.models.blocks import ModelOutput
from esc2c.models.registry import build_model

from _bands import IN, Bands


def _us8k_files(n_rec, clips_per_rec):
    # UrbanSound8K names: [fsID]-[classID]-[occurrenceID]-[sliceID].wav; the recording is fsID
    return [f"{100 + r}-3-0-{s}.wav" for r in range(n_rec) for s in range(clips_per_rec[r])]


def test_parts_keep_recordings_whole_and_balanced():
    sizes = [1, 7, 3, 3, 5, 2, 2, 4, 6, 1]
    files = _us8k_files(len(sizes), sizes)
    part = recording_parts(files, "urbansound8k", 3, seed=4)
    rec = np.array([f.split("-")[0] for f in files])
    for r in np.unique(rec):
        assert len(set(part[rec == r])) == 1            # a recording never straddles two parts
    counts = np.bincount(part, minlength=3)
    assert counts.sum() == len(files) and counts.max() - counts.min() <= max(sizes)
    assert np.array_equal(part, recording_parts(files, "urbansound8k", 3, seed=4))   # seeded
    with pytest.raises(Esc2cError, match="at least 2 parts"):
        recording_parts(files, "urbansound8k", 1)
    with pytest.raises(Esc2cError, match="needs at least 11 recordings"):
        recording_parts(files, "urbansound8k", 11)


class _Const(torch.nn.Module):
    """A 'teacher' whose logits are its id in every class and whose one aux head gives the input's mean."""

    def __init__(self, tid):
        super().__init__()
        self.tid = float(tid)

    def forward_all(self, x):
        b = len(x)
        return ModelOutput(torch.full((b, 4), self.tid), [x.reshape(b, -1).mean(1, keepdim=True).repeat(1, 4)], [])


def test_each_row_is_scored_by_its_own_teacher():
    part = np.array([0, 1, 1, 0, 2, 2, 1])
    t = CrossFitTeacher([_Const(0), _Const(1), _Const(2)], part)
    x = torch.randn(4, *IN)
    rows = torch.tensor([6, 0, 4, 3])
    out = t.forward_all(x, rows=rows)
    assert out.logits[:, 0].tolist() == [1.0, 0.0, 2.0, 0.0]
    torch.testing.assert_close(out.aux_logits[0][:, 0], x.reshape(4, -1).mean(1))   # each row's own input
    with pytest.raises(Esc2cError, match="pass the rows"):
        t.forward_all(x)
    with pytest.raises(Esc2cError, match="past the 7 training rows"):
        t.forward_all(x, rows=torch.tensor([0, 1, 2, 7]))
    with pytest.raises(Esc2cError, match="part 3 has no teacher"):
        CrossFitTeacher([_Const(0), _Const(1), _Const(2)], np.array([0, 3]))


class _Spy(torch.nn.Module):
    """A per-row teacher (as CrossFitTeacher) that records (batch, rows) and answers like a real ESCNet
    teacher, so the KD loss runs."""

    per_row = True

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = build_model("small", 4, width=0.5, in_shape=IN, aux=True).eval()
        self.calls = []

    def forward_all(self, x, rows=None):
        self.calls.append((x.detach().clone(), rows.clone()))
        return self.net.forward_all(x)


@pytest.mark.parametrize("augment", [False, True], ids=["cached", "augmented"])
def test_training_loop_passes_each_batch_rows(augment):
    """Without augmentation the teacher runs once over the training set in order (rows 0..n-1); with it, once
    per batch on the augmented clips, whose rows are the ones drawn: a per-clip level change leaves x - x[rows]
    one constant per clip."""
    tr = Bands(40, 0)
    spy = _Spy()
    aug = AugmentConfig(gain_db=6.0) if augment else AugmentConfig()
    torch.manual_seed(1)
    student = build_model("small", 4, width=0.5, in_shape=IN, aux=True)
    train(student, tr, None, "pokd", teacher=spy, cfg=TrainConfig(epochs=2, batch_size=16, progress=False,
                                                                    verbose=False, augment=aug))
    calls = spy.calls
    x = torch.as_tensor(tr.x)
    if not augment:
        assert len(calls) == 1 and torch.equal(calls[0][1], torch.arange(len(tr.y)))
        assert torch.equal(calls[0][0], x)
        return
    assert len(calls) == 2 * 3                                   # 2 epochs of 40 clips in batches of 16
    for xb, rows in calls:
        d = (xb - x[rows]).reshape(len(rows), -1)
        assert torch.allclose(d, d[:, :1].expand_as(d), atol=1e-5)   # the same clip, shifted in level
        assert not torch.allclose(d, torch.zeros_like(d))
    seen = torch.cat([rows for _, rows in calls[:3]])
    assert sorted(seen.tolist()) == list(range(len(tr.y)))      # an epoch covers every row once
