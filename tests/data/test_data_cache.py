import os

import numpy as np
import pytest

from esc2c import features
from esc2c.data import load_features
from esc2c.data import loader
from esc2c.features import FeatureSpec


@pytest.fixture
def us8k_subset(shared_data, tmp_path):
    """The official csv and 12 files of fold 2, linked (not copied) into a temp root."""
    src = shared_data / "urbansound8k"
    root = tmp_path / "us8k"
    (root / "metadata").mkdir(parents=True)
    (root / "metadata" / "UrbanSound8K.csv").symlink_to(src / "metadata" / "UrbanSound8K.csv")
    (root / "audio" / "fold2").mkdir(parents=True)
    for p in sorted((src / "audio" / "fold2").iterdir())[:12]:
        (root / "audio" / "fold2" / p.name).symlink_to(p)
    return root


def _no_compute(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(features, "logmel", boom)
    monkeypatch.setattr(loader, "read_audio", boom)


@pytest.mark.filterwarnings("ignore::esc2c.data.MissingClipsWarning")
def test_second_call_loads_from_cache(us8k_subset, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    spec = FeatureSpec(clip_seconds=2.0)
    first = load_features("urbansound8k", str(us8k_subset), [2], spec, cache_dir=str(cache), progress=False)
    assert len(list((cache / "features").glob("urbansound8k-fold2-*.npz"))) == 1
    with monkeypatch.context() as m:
        _no_compute(m)
        second = load_features("urbansound8k", str(us8k_subset), [2], spec, cache_dir=str(cache), progress=False)
        np.testing.assert_array_equal(first.x, second.x)
        assert first.files == second.files and (first.y == second.y).all()
        # other normalisation stats reuse the same cached log-mel
        normed = load_features("urbansound8k", str(us8k_subset), [2], spec.with_stats(-30.0, 12.0),
                               cache_dir=str(cache), progress=False)
        np.testing.assert_allclose(normed.x, (first.x + 30.0) / 12.0, rtol=1e-6, atol=1e-5)
        # a changed feature parameter or a changed file is a cache miss
        with pytest.raises(AssertionError, match="recomputed"):
            load_features("urbansound8k", str(us8k_subset), [2], FeatureSpec(clip_seconds=2.0, n_mels=40),
                          cache_dir=str(cache), progress=False)
        victim = sorted((us8k_subset / "audio" / "fold2").iterdir())[0]
        os.unlink(victim)
        with pytest.raises(AssertionError, match="recomputed"):
            load_features("urbansound8k", str(us8k_subset), [2], spec, cache_dir=str(cache), progress=False)


def test_cache_dir_from_environment_and_synthetic_key(tmp_path, monkeypatch):
    monkeypatch.setenv("ESC2C_CACHE", str(tmp_path / "envcache"))
    spec = FeatureSpec(clip_seconds=0.5)
    a = load_features("synthetic", None, [1], spec, progress=False, per_class=5)
    assert len(list((tmp_path / "envcache" / "features").glob("synthetic-fold1-*.npz"))) == 1
    with monkeypatch.context() as m:
        _no_compute(m)
        b = load_features("synthetic", None, [1], spec, progress=False, per_class=5)
        np.testing.assert_array_equal(a.x, b.x)
        with pytest.raises(AssertionError, match="recomputed"):
            load_features("synthetic", None, [1], spec, progress=False, per_class=5, seed=1)


def test_unreadable_cache_entry_is_recomputed(tmp_path):
    spec = FeatureSpec(clip_seconds=0.5)
    a = load_features("synthetic", None, [3], spec, cache_dir=str(tmp_path), progress=False, per_class=5)
    (entry,) = (tmp_path / "features").glob("*.npz")
    entry.write_bytes(b"truncated")
    b = load_features("synthetic", None, [3], spec, cache_dir=str(tmp_path), progress=False, per_class=5)
    np.testing.assert_array_equal(a.x, b.x)
    assert entry.stat().st_size > 1000


def test_feature_set_subset_stats_and_renormalise(tmp_path):
    spec = FeatureSpec(clip_seconds=0.5)
    fs = load_features("synthetic", None, None, spec, cache_dir=str(tmp_path), progress=False, per_class=10)
    assert fs.x.shape == (100, 1, 64, spec.frames) and sorted(set(fs.folds.tolist())) == [1, 2, 3, 4, 5]
    train = fs.subset([1, 2, 3, 4])
    assert len(train) == 80 and set(train.folds.tolist()) == {1, 2, 3, 4}
    m, s = train.stats()
    assert m == pytest.approx(float(train.x.mean()), rel=1e-5) and s == pytest.approx(float(train.x.std()), rel=1e-4)
    normed = fs.normalised(spec.with_stats(m, s)).subset([1, 2, 3, 4])
    assert abs(normed.x.mean()) < 1e-3 and abs(normed.x.std() - 1) < 1e-3
    assert normed.stats() == pytest.approx((m, s), rel=1e-4)
    with pytest.raises(Exception, match="fold"):
        fs.subset([7])
