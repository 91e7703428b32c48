"""The validation split held out of the training folds by whole source recordings."""
import numpy as np
import pytest

from esc2c.compress import pipeline
from esc2c.compress.config import load_config
from esc2c.data import FeatureSet
from esc2c.data.holdout import holdout_split, recording_id
from esc2c.errors import Esc2cError


def _us8k_set() -> FeatureSet:
    # 12 recordings with 1..5 slices each, the row value encodes the row index
    files = [f"/d/fold{1 + r % 2}/{1000 + r}-{r % 10}-0-{s}.wav" for r in range(12) for s in range(1 + r % 5)]
    n = len(files)
    return FeatureSet(np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1), np.arange(n) % 10,
                      np.array([1 + int(f.split("/fold")[1][0]) % 2 for f in files]), [str(i) for i in range(10)],
                      files)


def test_recording_ids():
    assert recording_id("urbansound8k", "/x/fold3/100652-3-0-1.wav") == "100652"
    assert recording_id("esc50", "/x/audio/1-100038-A-14.wav") == "100038"
    assert recording_id("synthetic", "synthetic/seed0/dog/0003") == "0003"


def test_holdout_takes_whole_recordings():
    fs = _us8k_set()
    rest, held = holdout_split(fs, "urbansound8k", 0.3, seed=1)
    assert len(rest) + len(held) == len(fs) and len(held) >= 0.3 * len(fs)
    rec = lambda part: {recording_id("urbansound8k", f) for f in part.files}  # noqa: E731
    assert rec(rest) and rec(held) and not rec(rest) & rec(held)       # no recording on both sides
    assert sorted(np.concatenate([rest.x, held.x]).ravel().tolist()) == list(range(len(fs)))
    assert [int(v) for v in held.x.ravel()] == sorted(int(v) for v in held.x.ravel())   # original order kept
    again, _ = holdout_split(fs, "urbansound8k", 0.3, seed=1)
    assert again.files == rest.files                                   # seeded
    with pytest.raises(Esc2cError, match="holdout fraction"):
        holdout_split(fs, "urbansound8k", 1.0)


def test_pipeline_picks_epochs_on_the_holdout_not_the_test_folds(tmp_path, monkeypatch):
    monkeypatch.setenv("ESC2C_CACHE", str(tmp_path / "cache"))
    over = {"synthetic_per_class": 6, "features": {"n_mels": 16, "clip_seconds": 1.0, "n_fft": 256,
                                                   "win_length": 256, "hop_length": 128}}
    tr0, sel0, va0, _ = pipeline.load_data(load_config(None, over), log=lambda s: None)
    assert sel0 is va0                                                 # default: the paper's protocol
    tr, sel, va, _ = pipeline.load_data(load_config(None, {**over, "holdout": 0.25}), log=lambda s: None)
    assert set(sel.files) <= set(tr0.files) and not set(sel.files) & set(tr.files)
    assert len(tr) + len(sel) == len(tr0) and va.files == va0.files
    with pytest.raises(Esc2cError, match="'holdout'"):
        load_config(None, {"holdout": 1.0})
