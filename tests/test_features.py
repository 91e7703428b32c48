import numpy as np
import pytest
import torch

from esc2c.errors import Esc2cError
from esc2c.features import FeatureSpec, fix_length, logmel, logmel_torch, mel_filterbank, window

librosa = pytest.importorskip("librosa")

SPECS = [
    FeatureSpec(),
    FeatureSpec(mel_scale="htk", mel_norm=None, fmin=50.0, fmax=7000.0, n_mels=40),
    FeatureSpec(sample_rate=22050, clip_seconds=1.5, center=True, power=1.0, n_fft=2048, win_length=2048,
                hop_length=256, window="hamming", n_mels=96),
]


def _signal(spec, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(spec.n_samples) / spec.sample_rate
    chirp = np.sin(2 * np.pi * (200 * t + 900 * t**2))
    return (0.3 * chirp + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def _librosa_db(spec, audio):
    mel = librosa.feature.melspectrogram(
        y=audio.astype(np.float64), sr=spec.sample_rate, n_fft=spec.n_fft, hop_length=spec.hop_length,
        win_length=spec.win_length, window=spec.window, center=spec.center, pad_mode="constant",
        power=spec.power, n_mels=spec.n_mels, fmin=spec.fmin, fmax=spec.fmax, htk=spec.mel_scale == "htk",
        norm=spec.mel_norm,
    )
    return mel, 10 * np.log10(np.maximum(mel, spec.log_floor))


@pytest.mark.parametrize("spec", SPECS, ids=["default", "htk-nonorm-band", "center-power1-hamming-22k"])
def test_logmel_matches_librosa(spec):
    # Measured: max |ours - librosa| = 4.5e-6 dB (default), 2.9e-6 dB (htk), 1.4e-6 dB (center, power 1).
    audio = _signal(spec)
    mel, ref = _librosa_db(spec, audio)
    ours = logmel(spec, audio)
    assert ours.shape == ref.shape == (spec.n_mels, spec.frames)
    above = mel > spec.log_floor
    assert above.mean() > 0.99
    assert np.abs(ours - ref)[above].max() < 1e-3  # dB


@pytest.mark.parametrize("spec", SPECS, ids=["default", "htk-nonorm-band", "center-power1-hamming-22k"])
def test_filterbank_and_window_match_librosa(spec):
    ref = librosa.filters.mel(sr=spec.sample_rate, n_fft=spec.n_fft, n_mels=spec.n_mels, fmin=spec.fmin,
                              fmax=spec.fmax, htk=spec.mel_scale == "htk", norm=spec.mel_norm)
    fb = mel_filterbank(spec)
    assert fb.dtype == np.float32 and fb.shape == (spec.n_mels, spec.n_fft // 2 + 1)
    np.testing.assert_allclose(fb, ref, rtol=1e-5, atol=1e-9)
    w = window(spec)
    assert w.dtype == np.float32 and w.shape == (spec.win_length,)
    np.testing.assert_allclose(w, librosa.filters.get_window(spec.window, spec.win_length, fftbins=True), atol=1e-7)


def test_torch_matches_numpy_and_batch_matches_single():
    spec = FeatureSpec(clip_seconds=1.0)
    batch = np.stack([_signal(spec, s) for s in range(3)])
    ours = logmel(spec, batch)
    assert ours.shape == (3, spec.n_mels, spec.frames) and ours.dtype == np.float32
    np.testing.assert_array_equal(ours[1], logmel(spec, batch[1]))
    t = logmel_torch(spec, torch.from_numpy(batch))
    assert tuple(t.shape) == ours.shape and t.dtype == torch.float32
    assert np.abs(t.numpy() - ours).max() < 1e-3  # float32 torch vs float64 numpy, dB
    assert tuple(logmel_torch(spec, torch.from_numpy(batch[0])).shape) == (spec.n_mels, spec.frames)


def test_normalisation_and_floor():
    spec = FeatureSpec(clip_seconds=1.0)
    audio = _signal(spec)
    norm = spec.with_stats(-20.0, 8.0)
    np.testing.assert_allclose(logmel(norm, audio), (logmel(spec, audio) + 20.0) / 8.0, rtol=1e-6, atol=1e-5)
    silent = logmel(spec, np.zeros(spec.n_samples, np.float32))
    assert np.all(silent == np.float32(10 * np.log10(spec.log_floor)))


def test_default_sizes():
    s = FeatureSpec()
    assert s.n_samples == 64000
    assert s.frames == 1 + (64000 - 1024) // 512 == 124
    assert FeatureSpec(center=True).frames == 1 + 64000 // 512


def test_fix_length_rule():
    x = np.arange(1, 6, dtype=np.float32)
    np.testing.assert_array_equal(fix_length(x, 3), [1, 2, 3])  # longer: keep the start
    np.testing.assert_array_equal(fix_length(x, 7), [1, 2, 3, 4, 5, 0, 0])  # shorter: zeros at the end


def test_spec_round_trip_and_key():
    s = FeatureSpec(n_mels=40, fmax=7600.0, mel_scale="htk", mel_norm=None)
    assert FeatureSpec.from_json(s.to_json()) == s
    assert FeatureSpec.from_dict(s.to_dict()) == s
    assert s.key() == FeatureSpec(n_mels=40, fmax=7600.0, mel_scale="htk", mel_norm=None).key()
    assert len(s.key()) == 12
    assert s.with_stats(1.0, 2.0).key() != s.key()
    assert FeatureSpec(hop_length=256).key() != FeatureSpec().key()
    assert s.with_stats(1.0, 2.0).mean == 1.0 and s.with_stats(1.0, 2.0).std == 2.0
    assert FeatureSpec(clip_seconds=4, fmin=0, sample_rate=np.int64(16000)).key() == FeatureSpec().key()


@pytest.mark.parametrize(
    "fields, named",
    [
        ({"n_mels": 0}, "n_mels"),
        ({"hop_length": 2.5}, "hop_length"),
        ({"win_length": 2048}, "win_length"),
        ({"mel_scale": "bark"}, "mel_scale"),
        ({"mel_norm": "l2"}, "mel_norm"),
        ({"window": "kaiser"}, "window"),
        ({"fmax": 9000.0}, "fmax"),
        ({"fmin": 8000.0}, "fmin"),
        ({"std": 0.0}, "std"),
        ({"log_floor": -1.0}, "log_floor"),
        ({"clip_seconds": 0.01}, "clip_seconds"),
        ({"center": "yes"}, "center"),
        ({"n_bands": 3}, "n_bands"),
    ],
)
def test_spec_rejects_bad_fields(fields, named):
    with pytest.raises(Esc2cError, match=named):
        FeatureSpec.from_dict({**FeatureSpec().to_dict(), **fields})


def test_bad_json_and_bad_audio_shape():
    with pytest.raises(Esc2cError, match="JSON"):
        FeatureSpec.from_json("{not json")
    spec = FeatureSpec(clip_seconds=1.0)
    with pytest.raises(Esc2cError, match="16000"):
        logmel(spec, np.zeros(15999, np.float32))
