"""The C front end (runtime/frontend/, CMSIS-DSP FFT, tables from esc2c.features) against the Python
pipeline (esc2c.features.logmel in float64 + QuantizeLinear) on real clips, its streaming mode against its
whole-clip mode, and the generated tables against the training code's."""
from __future__ import annotations

import numpy as np
import pytest

from esc2c import features as fe
from esc2c.errors import Esc2cError
from esc2c.features import FeatureSpec
from esc2c.logmel import host, python_frontend, tables

# normalisation and input quantization of the kind a trained model has (log-mel dB stats, ~0.03 std/LSB)
MEAN, STD = -45.0, 18.0


def _pcm(paths, spec):
    return [python_frontend.read_pcm(str(p), spec.sample_rate) for p in paths]


def _fixed(pcms, n):
    return np.stack([np.pad(p[:n], (0, max(0, n - len(p)))) for p in pcms])


def _compare(spec, pcms, scale, zp):
    exe = host.build(spec, scale, zp)
    c = host.run(exe, spec, _fixed(pcms, spec.n_samples))
    py = np.stack([python_frontend.model_input(spec, p, scale, zp) for p in pcms])
    d = np.abs(c.astype(np.int32) - py.astype(np.int32))
    return c, py, d


def _clips(shared_data, dataset, pattern, k):
    root = shared_data / dataset / "audio"
    files = sorted(root.glob(pattern))
    assert len(files) >= k, f"{root}: fewer than {k} clips matching {pattern}"
    return files[:: max(1, len(files) // k)][:k]


@pytest.mark.parametrize("dataset,pattern,seconds", [
    ("urbansound8k", "fold1/*.flac", 4.0),
    ("esc50", "4-*.flac", 5.0),
])
def test_c_front_end_matches_python(shared_data, dataset, pattern, seconds):
    spec = FeatureSpec(clip_seconds=seconds).with_stats(MEAN, STD)
    pcms = _pcm(_clips(shared_data, dataset, pattern, 6), spec)
    c, py, d = _compare(spec, pcms, scale=0.03, zp=-5)
    same = float((d == 0).mean())
    assert same >= 0.99, f"{dataset}: only {same:.4%} of int8 elements identical"
    assert d.max() <= 1, f"{dataset}: max difference {d.max()} LSB"
    assert len(np.unique(py)) > 50  # real spread of values, not a constant map


def test_short_clip_is_zero_padded_like_python(shared_data):
    """UrbanSound8K slices shorter than 4 s: C pads in esc2c_frontend_clip exactly as fix_length does."""
    spec = FeatureSpec(clip_seconds=4.0).with_stats(MEAN, STD)
    pcm = _pcm(_clips(shared_data, "urbansound8k", "fold1/*.flac", 1), spec)[0][: spec.n_samples // 3]
    exe = host.build(spec, 0.03, 0)
    import subprocess
    out = subprocess.run([str(exe), "clip", str(len(pcm))], input=pcm.astype("<i2").tobytes(),
                         capture_output=True, check=True).stdout
    c = np.frombuffer(out, np.int8).reshape(spec.n_mels, spec.frames)
    py = python_frontend.model_input(spec, pcm, 0.03, 0)
    d = np.abs(c.astype(int) - py)
    assert d.max() <= 1 and (d == 0).mean() >= 0.99
    assert (py[:, -10:] == py[0, -1]).all()  # the padded tail is the log floor everywhere


def test_saturation_and_rounding_follow_quantizelinear(shared_data):
    """A fine input scale that saturates many elements at both ends: C saturates like QuantizeLinear."""
    spec = FeatureSpec(clip_seconds=5.0).with_stats(MEAN, STD)
    pcms = _pcm(_clips(shared_data, "esc50", "4-*.flac", 3), spec)
    c, py, d = _compare(spec, pcms, scale=0.008, zp=3)
    assert (py == -128).any() and (py == 127).any()
    assert (d == 0).mean() >= 0.99 and d.max() <= 1
    assert np.array_equal(c == -128, py == -128) or (d[(c == -128) != (py == -128)] <= 1).all()


@pytest.mark.parametrize("kw", [
    dict(),                                                          # window = 2 hops
    dict(n_fft=512, win_length=400, hop_length=160, n_mels=40, fmin=50.0, fmax=7000.0, window="hamming",
         mel_scale="htk", mel_norm=None, power=1.0),                 # window not whole hops, other options
])
def test_streaming_equals_whole_clip_and_python(shared_data, kw):
    spec = FeatureSpec(clip_seconds=2.0, **kw).with_stats(MEAN if kw.get("power", 2.0) == 2.0 else -20.0, STD)
    pcms = _pcm(_clips(shared_data, "esc50", "4-*.flac", 3), spec)
    x = _fixed(pcms, spec.n_samples)
    exe = host.build(spec, 0.03, -2)
    clip = host.run(exe, spec, x, "clip")
    # streaming: the hops covering the last frame (the streaming ring emits frame t after its last hop)
    n_stream = -(-((spec.frames - 1) * spec.hop_length + spec.win_length) // spec.hop_length) * spec.hop_length
    stream = host.run(exe, spec, _fixed(pcms, n_stream) if n_stream > spec.n_samples else x[:, :n_stream], "stream")
    assert np.array_equal(stream, clip)
    py = np.stack([python_frontend.model_input(spec, p, 0.03, -2) for p in pcms])
    d = np.abs(clip.astype(int) - py)
    assert (d == 0).mean() >= 0.99 and d.max() <= 1


def test_streaming_window_slides(shared_data):
    """More audio than one clip: the window after k extra hops is the clip that starts k hops later."""
    spec = FeatureSpec(clip_seconds=1.0).with_stats(MEAN, STD)
    pcm = _pcm(_clips(shared_data, "esc50", "4-*.flac", 1), spec)[0]
    k = 7
    exe = host.build(spec, 0.03, 0)
    n = (spec.frames + 1 + k) * spec.hop_length  # the ring holds 2 hops: the first column after 2 hops
    stream = host.run(exe, spec, pcm[None, :n], "stream")
    later = host.run(exe, spec, pcm[None, k * spec.hop_length: k * spec.hop_length + spec.n_samples], "clip")
    assert np.array_equal(stream, later)


def test_tables_come_from_the_training_code():
    spec = FeatureSpec(clip_seconds=1.0, n_mels=40, fmax=7600.0)
    t = tables.make_tables(spec)
    assert np.array_equal(t.window * np.float32(32768.0), fe.window(spec))
    dense = np.zeros((spec.n_mels, spec.n_bins), np.float32)
    for m in range(spec.n_mels):
        dense[m, t.mel_start[m]: t.mel_start[m] + t.mel_len[m]] = t.mel_weights[t.mel_offset[m]: t.mel_offset[m] + t.mel_len[m]]
    assert np.array_equal(dense, fe.mel_filterbank(spec))
    files = tables.render(spec, 0.05, 3)
    assert f"#define ESC2C_FE_FRAMES           {spec.frames}" in files[tables.CONFIG_H]
    assert "arm_rfft_fast_init_1024_f32" in files[tables.CONFIG_H]


@pytest.mark.parametrize("kw,field", [
    (dict(center=True), "center"), (dict(power=1.5), "power"), (dict(n_fft=1000, win_length=1000), "n_fft"),
])
def test_unsupported_specs_are_refused(kw, field):
    with pytest.raises(Esc2cError, match=f"field '{field}'"):
        tables.make_tables(FeatureSpec(clip_seconds=1.0, **kw))


def test_bad_quantization_is_refused():
    with pytest.raises(Esc2cError, match="input scale"):
        tables.render(FeatureSpec(clip_seconds=1.0), 0.0, 0)
    with pytest.raises(Esc2cError, match="zero point"):
        tables.render(FeatureSpec(clip_seconds=1.0), 0.1, 200)


def test_cmsis_dsp_path_from_env(monkeypatch, tmp_path):
    from esc2c.logmel import cmsis_dsp

    real = cmsis_dsp.cmsis_dsp_path()
    monkeypatch.setenv(cmsis_dsp.ENV_VAR, str(real))
    assert cmsis_dsp.cmsis_dsp_path() == real
    monkeypatch.setenv(cmsis_dsp.ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(Esc2cError, match="no such directory"):
        cmsis_dsp.cmsis_dsp_path()
    monkeypatch.setenv(cmsis_dsp.ENV_VAR, str(tmp_path))
    with pytest.raises(Esc2cError, match="not a CMSIS-DSP source tree"):
        cmsis_dsp.cmsis_dsp_path()
