import csv

import numpy as np
import pytest

from esc2c.data import MissingClipsWarning, dataset_info, load_clips, load_features
from esc2c.features import FeatureSpec


@pytest.fixture(scope="module")
def esc50(shared_data):
    return shared_data / "esc50"


@pytest.fixture(scope="module")
def rows(esc50):
    with open(esc50 / "meta" / "esc50.csv", newline="") as f:
        return {r["filename"].rsplit(".", 1)[0]: r for r in csv.DictReader(f)}


def test_info_counts(esc50):
    info = dataset_info("esc50", str(esc50))
    folds = {f: (found, listed) for f, found, listed in info.folds}
    assert folds == {1: (0, 400), 2: (11, 400), 3: (1, 400), 4: (400, 400), 5: (2, 400)}
    assert info.missing == 2000 - 414
    assert len(info.classes) == 50 and info.classes[0] == ("dog", 8, 40)


def test_fold4_clips_cropped_to_the_start(esc50, rows):
    clips = load_clips("esc50", str(esc50), [4], 16000, 4.0)  # complete fold: no warning
    assert len(clips) == 400
    assert np.bincount([c.label for c in clips]).tolist() == [8] * 50
    for c in clips[:5]:
        r = rows[c.path.rsplit("/", 1)[1].rsplit(".", 1)[0]]
        assert c.label == int(r["target"]) and c.fold == 4 == int(r["fold"])
        assert c.audio.shape == (64000,)
    import soundfile as sf

    full, _ = sf.read(clips[0].path, dtype="float32")
    assert full.shape == (80000,)  # 5 s clips keep their first 4 s
    np.testing.assert_array_equal(clips[0].audio, full[:64000])


def test_partial_fold_warns_and_esc10_subset(esc50, rows, tmp_path):
    with pytest.warns(MissingClipsWarning, match="389 of 400"):
        clips = load_clips("esc50", str(esc50), [2], 16000, 5.0)
    assert len(clips) == 11
    fs = load_features("esc10", str(esc50), [4], FeatureSpec(clip_seconds=5.0), cache_dir=str(tmp_path),
                       progress=False)
    assert fs.x.shape == (80, 1, 64, 155)
    assert np.bincount(fs.y).tolist() == [8] * 10
    esc10_targets = sorted({int(r["target"]) for r in rows.values() if r["esc10"] == "True"})
    names = {int(r["target"]): r["category"] for r in rows.values()}
    assert fs.class_names == [names[t] for t in esc10_targets]
    for f, y in zip(fs.files, fs.y):
        r = rows[f.rsplit("/", 1)[1].rsplit(".", 1)[0]]
        assert r["esc10"] == "True" and fs.class_names[y] == r["category"]
