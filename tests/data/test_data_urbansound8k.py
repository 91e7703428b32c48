import csv

import numpy as np
import pytest
import soundfile as sf

from esc2c.data import MissingClipsWarning, dataset_info, load_clips, load_features
from esc2c.features import FeatureSpec, fix_length, logmel


@pytest.fixture(scope="module")
def us8k(shared_data):
    return shared_data / "urbansound8k"


@pytest.fixture(scope="module")
def rows(us8k):
    with open(us8k / "metadata" / "UrbanSound8K.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_info_counts(us8k):
    info = dataset_info("urbansound8k", str(us8k))
    folds = {f: (found, listed) for f, found, listed in info.folds}
    assert folds[1] == (873, 873) and folds[2] == (888, 888) and folds[3] == (387, 925)
    assert all(folds[f][0] == 0 for f in range(4, 11))
    assert info.listed == 8732 and info.found == 2148 and info.missing == 8732 - 2148
    assert len(info.classes) == 10 and info.classes[0][0] == "air_conditioner"
    assert sum(found for _, found, _ in info.classes) == 2148


def test_load_fold3_warns_missing_count_and_follows_csv(us8k, rows):
    with pytest.warns(MissingClipsWarning, match=r"538 of 925 clips listed for fold\(s\) 3"):
        clips = load_clips("urbansound8k", str(us8k), [3], 16000, 4.0)
    assert len(clips) == 387
    listed = {r["slice_file_name"].rsplit(".", 1)[0]: r for r in rows}
    for c in clips:
        r = listed[c.path.rsplit("/", 1)[1].rsplit(".", 1)[0]]
        assert c.fold == 3 == int(r["fold"]) and c.label == int(r["classID"])
        assert c.audio.shape == (64000,) and c.audio.dtype == np.float32
        # shorter slices are zero-padded at the end, after their listed length
        n = int(round((float(r["end"]) - float(r["start"])) * 16000))
        if n < 64000 - 16:
            assert not c.audio[n + 1 :].any()


def test_features_of_twenty_clips(us8k, tmp_path):
    # A root with the official csv and 20 of fold 1's files (links into ../shared/data, nothing copied).
    root = tmp_path / "us8k"
    (root / "metadata").mkdir(parents=True)
    (root / "metadata" / "UrbanSound8K.csv").symlink_to(us8k / "metadata" / "UrbanSound8K.csv")
    (root / "audio" / "fold1").mkdir(parents=True)
    picked = sorted((us8k / "audio" / "fold1").iterdir())[:20]
    for p in picked:
        (root / "audio" / "fold1" / p.name).symlink_to(p)
    spec = FeatureSpec()
    with pytest.warns(MissingClipsWarning, match="853 of 873"):
        fs = load_features("urbansound8k", str(root), [1], spec, cache_dir=str(tmp_path / "cache"), progress=False)
    assert fs.x.shape == (20, 1, 64, 124) and fs.x.dtype == np.float32 and np.isfinite(fs.x).all()
    assert fs.folds.tolist() == [1] * 20 and len(fs.class_names) == 10
    by_stem = {}
    with open(us8k / "metadata" / "UrbanSound8K.csv", newline="") as f:
        for r in csv.DictReader(f):
            by_stem[r["slice_file_name"].rsplit(".", 1)[0]] = int(r["classID"])
    assert fs.y.tolist() == [by_stem[f.rsplit("/", 1)[1].rsplit(".", 1)[0]] for f in fs.files]
    assert sorted(fs.files) == sorted(str(root / "audio" / "fold1" / p.name) for p in picked)
    k = fs.files.index(str(root / "audio" / "fold1" / picked[0].name))
    audio, sr = sf.read(picked[0], dtype="float32")
    assert sr == 16000
    np.testing.assert_array_equal(fs.x[k, 0], logmel(spec, fix_length(audio, spec.n_samples)))
