"""The Python pipeline the C front end must reproduce: int16 PCM -> :func:`esc2c.features.logmel` (float64
maths, the training features) -> the model's input quantization (:func:`esc2c.quant.intparams.quantize`:
ONNX QuantizeLinear, round half to even, saturate to int8)."""
from __future__ import annotations

import numpy as np
import soundfile as sf

from esc2c import features as fe
from esc2c.data.audio import read_audio
from esc2c.errors import Esc2cError
from esc2c.features import FeatureSpec
from esc2c.quant import intparams


def to_pcm(audio: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1) -> int16 PCM (x * 32768, rounded, saturated); exact for 16-bit sources."""
    a = np.asarray(audio, dtype=np.float64)
    return np.clip(np.rint(a * 32768.0), -32768, 32767).astype(np.int16)


def model_input(spec: FeatureSpec, pcm: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """int8 ``[n_mels, frames]`` (NHWC with C = 1: element (mel, frame) at ``mel * frames + frame``) of one
    clip of int16 PCM of any length (the clip length rule pads or cuts it to ``spec.n_samples``)."""
    pcm = np.asarray(pcm)
    if pcm.ndim != 1 or pcm.dtype != np.int16:
        raise Esc2cError(f"front end reference: expected 1-D int16 PCM, got {pcm.dtype} {pcm.shape}")
    audio = fe.fix_length(pcm.astype(np.float64) / 32768.0, spec.n_samples)  # fix_length casts to float32: exact
    return intparams.quantize(fe.logmel(spec, audio), np.float32(scale), zero_point)


def read_pcm(path: str, sample_rate: int) -> np.ndarray:
    """A file's audio as mono int16 PCM at ``sample_rate``: the samples themselves for a mono file at that
    rate, else :func:`esc2c.data.audio.read_audio` (mixdown, resampling) rounded to int16."""


    try:
        info = sf.info(path)
    except (sf.SoundFileError, RuntimeError, OSError) as e:
        raise Esc2cError(f"{path}: cannot decode audio ({e})") from None
    if info.samplerate == sample_rate and info.channels == 1:
        return sf.read(path, dtype="int16")[0]
    return to_pcm(read_audio(path, sample_rate))
