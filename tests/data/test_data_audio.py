"""Audio decoding, format and layout rules, and the errors, on small generated dataset roots."""
import numpy as np
import pytest
import soundfile as sf

from esc2c.data import MissingClipsWarning, load_clips, load_features
from esc2c.errors import Esc2cError
from esc2c.features import FeatureSpec

HEADER = "slice_file_name,fsID,start,end,salience,fold,classID,class\n"
ROWS = [
    ("1-0-0-0.wav", 0.0, 4.0, 1, 0, "air_conditioner"),
    ("2-1-0-0.wav", 10.0, 10.5, 1, 1, "car_horn"),
    ("3-2-0-0.wav", 0.0, 4.0, 2, 2, "children_playing"),
    ("4-2-0-1.wav", 0.0, 4.0, 3, 2, "children_playing"),
]


def us8k_root(tmp_path):
    root = tmp_path / "us8k"
    (root / "metadata").mkdir(parents=True)
    lines = [f"{n},{n.split('-')[0]},{s},{e},1,{f},{c},{cls}\n" for n, s, e, f, c, cls in ROWS]
    (root / "metadata" / "UrbanSound8K.csv").write_text(HEADER + "".join(lines))
    for f in (1, 2, 3):
        (root / "audio" / f"fold{f}").mkdir(parents=True)
    return root


def tone(freq, seconds, rate, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    x = 0.5 * np.sin(2 * np.pi * freq * t)
    return np.stack([x] * channels, 1) if channels > 1 else x


def test_formats_resampling_stereo_and_slice_length(tmp_path):
    root = us8k_root(tmp_path)
    sf.write(root / "audio/fold1/1-0-0-0.ogg", tone(1000, 4.0, 44100, channels=2), 44100, format="OGG")
    sf.write(root / "audio/fold1/2-1-0-0.wav", tone(500, 1.0, 22050), 22050)  # listed 0.5 s, file 1 s
    clips = load_clips("urbansound8k", str(root), [1], 16000, 1.0)
    assert [c.label for c in clips] == [0, 1]
    assert clips[0].path.endswith(".ogg")
    for c, f in zip(clips, (1000, 500)):
        assert c.audio.shape == (16000,)
        peak_hz = np.argmax(np.abs(np.fft.rfft(c.audio[:8000]))) * 16000 / 8000
        assert abs(peak_hz - f) <= 2
    # the slice's listed length (end - start = 0.5 s) bounds the audio used; the rest is zero padding
    assert np.abs(clips[1].audio[:7990]).max() > 0.4
    assert not clips[1].audio[8001:].any()


def test_listed_extension_is_preferred_and_flac_accepted(tmp_path):
    root = us8k_root(tmp_path)
    sf.write(root / "audio/fold1/1-0-0-0.flac", tone(300, 1.0, 16000), 16000)
    sf.write(root / "audio/fold1/1-0-0-0.wav", tone(700, 1.0, 16000), 16000)
    with pytest.warns(MissingClipsWarning, match="1 of 2"):
        (clip,) = load_clips("urbansound8k", str(root), [1], 16000, 1.0)
    assert clip.path.endswith(".wav")


def test_empty_fold_is_an_error_naming_fold_and_directory(tmp_path):
    root = us8k_root(tmp_path)
    sf.write(root / "audio/fold1/1-0-0-0.wav", tone(300, 1.0, 16000), 16000)
    with pytest.raises(Esc2cError, match=r"urbansound8k fold 2: no audio found in .*audio/fold2 \(1 clips listed\)"):
        load_clips("urbansound8k", str(root), [1, 2], 16000, 1.0)
    with pytest.raises(Esc2cError, match=r"fold 4 is not an official fold \(folds: 1, 2, 3\)"):
        load_features("urbansound8k", str(root), [4], FeatureSpec(), cache_dir=str(tmp_path / "c"))
    assert not (tmp_path / "c").exists()


def test_no_audio_at_all_is_an_error(tmp_path):
    root = us8k_root(tmp_path)
    with pytest.raises(Esc2cError, match="no audio found for any fold"):
        load_clips("urbansound8k", str(root), None, 16000, 1.0)


def test_corrupt_file_is_an_error_naming_it_and_writes_no_cache(tmp_path):
    root = us8k_root(tmp_path)
    bad = root / "audio/fold3/4-2-0-1.wav"
    bad.write_bytes(b"RIFF\x00\x01garbage, not audio" * 10)
    cache = tmp_path / "cache"
    with pytest.raises(Esc2cError, match=r"4-2-0-1\.wav: cannot decode audio"):
        load_features("urbansound8k", str(root), [3], FeatureSpec(), cache_dir=str(cache), progress=False)
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*"))


def test_bad_layouts(tmp_path):
    with pytest.raises(Esc2cError, match="data directory not found"):
        load_clips("esc50", str(tmp_path / "nope"), None, 16000, 1.0)
    with pytest.raises(Esc2cError, match=r"meta/esc50\.csv: metadata csv not found"):
        load_clips("esc50", str(tmp_path), None, 16000, 1.0)
    with pytest.raises(Esc2cError, match="needs a data directory"):
        load_clips("urbansound8k", None, None, 16000, 1.0)
    with pytest.raises(Esc2cError, match="unknown dataset 'esc100'"):
        load_clips("esc100", str(tmp_path), None, 16000, 1.0)
    root = us8k_root(tmp_path)
    (root / "metadata" / "UrbanSound8K.csv").write_text("slice_file_name,fold\nx.wav,1\n")
    with pytest.raises(Esc2cError, match="missing column.*start"):
        load_clips("urbansound8k", str(root), None, 16000, 1.0)
    (root / "metadata" / "UrbanSound8K.csv").write_text(HEADER + "x.wav,1,0,4,1,one,0,a\n")
    with pytest.raises(Esc2cError, match="row 2: column 'fold' has bad value 'one'"):
        load_clips("urbansound8k", str(root), None, 16000, 1.0)
