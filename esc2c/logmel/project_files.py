"""The front end in an emitted project (`esc2c emit`, when the ONNX model carries its FeatureSpec in the
metadata ``esc2c.feature_spec``, or with ``--frontend``):

OUT/
  esc2c_frontend_config.h esc2c_frontend_tables.c   generated from the FeatureSpec (esc2c.logmel.tables)
  audio_vectors.h                                   int16 PCM test clips, the Python pipeline's int8 input
                                                    for each and the integer reference's logits
  runtime/frontend/                                 copy of the repo's runtime/frontend/ (C front end, runners)
  audio_vectors/*.npy                               the same clips and expectations for host-side checks

and in OUT/CMakeLists.txt: the front end and CMSIS-DSP's FFT sources (``CMSIS_DSP_PATH``) in the esc2c_model
library, the host runner ``esc2c_audio_host`` (+ its ctest) and, for a board, the ``firmware_audio`` image.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx

from esc2c.contract import META_FEATURE_SPEC, ROUNDING_MODES
from esc2c.errors import Esc2cError
from esc2c.features import FeatureSpec
from esc2c.logmel import cmsis_dsp, python_frontend, tables
from esc2c.resources import runtime_dir
from esc2c.templating import render

RUNTIME = runtime_dir() / "frontend"
# PCM test clips compiled into firmware_audio are held to this much flash (the rest is model and code)
AUDIO_FLASH_BUDGET = 640 * 1024


@dataclass
class FrontendPlan:
    spec: FeatureSpec
    input_scale: float
    input_zero_point: int
    cmsis_dsp: Path
    files: dict[str, str]
    clip_names: list[str] = field(default_factory=list)
    pcm: np.ndarray | None = None        # int16 [clips, n_samples] (zero-padded)
    lengths: np.ndarray | None = None    # int [clips]: samples before the padding
    expect_input: np.ndarray | None = None  # int8 [clips, n_mels, frames], Python pipeline
    expect_logits: dict[str, np.ndarray] = field(default_factory=dict)  # rounding mode -> int8 [clips, classes]


def spec_from_onnx(path: str | Path) -> FeatureSpec | None:
    """The FeatureSpec stored in an ONNX model's metadata, or None."""
    model = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    if META_FEATURE_SPEC not in meta:
        return None
    try:
        return FeatureSpec.from_json(meta[META_FEATURE_SPEC])
    except Esc2cError as e:
        raise Esc2cError(f"{path}: metadata {META_FEATURE_SPEC}: {e}") from None


def synthetic_clip(spec: FeatureSpec, seed: int = 0) -> np.ndarray:
    """A deterministic test clip with a wide dynamic range: a rising chirp, decaying noise bursts, a quiet
    tone and a stretch of digital silence at the end."""
    rng = np.random.default_rng(seed)
    n, sr = spec.n_samples, spec.sample_rate
    t = np.arange(n) / sr
    f = 100.0 + (0.45 * sr - 100.0) * t / t[-1]
    x = 0.3 * np.sin(2 * np.pi * np.cumsum(f) / sr)
    env = np.exp(-((t * 4.0) % 1.0) * 12.0)
    x += 0.5 * env * rng.standard_normal(n)
    x += 1e-3 * np.sin(2 * np.pi * 440.0 * t)
    x[int(0.9 * n):] = 0.0
    return python_frontend.to_pcm(np.clip(x, -1.0, 1.0))


def plan(onnx_path: str | Path, graph, model_logits: Callable[[np.ndarray, str], np.ndarray],
         enabled: bool | None = None, audio: list[str | Path] = (),
         rounding_modes=ROUNDING_MODES) -> FrontendPlan | None:
    """What the front end adds to the project of ``graph`` (the compiled IR of ``onnx_path``), or None when
    ``enabled`` is False, or None (auto) and the model has no FeatureSpec. ``model_logits(x, rounding)``: the
    integer model's logits [N, classes] for int8 inputs x (the compiler's reference, given by emit);
    ``audio`` = PCM test clips (any format esc2c reads); one synthetic clip is always included."""
    if enabled is False:
        return None
    spec = spec_from_onnx(onnx_path)
    if spec is None:
        if enabled:
            raise Esc2cError(f"{onnx_path}: --frontend needs the model's FeatureSpec in the ONNX metadata "
                             f"'{META_FEATURE_SPEC}' (written by `esc2c compress` / esc2c.quant.export)")
        return None
    hint = "" if enabled else " (or emit with --no-frontend)"
    try:
        tables.check_spec(spec)
        inp = graph.input
        want = (1, spec.n_mels, spec.frames, 1)
        if tuple(inp.shape) != want:
            raise Esc2cError(f"the model input is {list(inp.shape)} (NHWC) but its FeatureSpec gives {list(want)} "
                             f"(n_mels={spec.n_mels}, frames={spec.frames})")
        scale, zp = float(np.float32(inp.scale)), int(inp.zero_point)
        files = tables.render(spec, scale, zp, source=Path(onnx_path).name)
        p = FrontendPlan(spec, scale, zp, cmsis_dsp.cmsis_dsp_path(), files)
    except Esc2cError as e:
        raise Esc2cError(f"{onnx_path}: front end: {e}{hint}") from None
    clips, names = [synthetic_clip(spec)], ["synthetic"]
    for a in audio:
        clips.append(python_frontend.read_pcm(str(a), spec.sample_rate))
        names.append(Path(a).name)
    n = spec.n_samples
    pcm_bytes = 2 * n * len(clips)
    if pcm_bytes > AUDIO_FLASH_BUDGET:
        fit = max(0, AUDIO_FLASH_BUDGET // (2 * n) - 1)
        raise Esc2cError(f"--audio: {len(clips)} clips of {n} samples need {pcm_bytes} B of flash, more than the "
                         f"{AUDIO_FLASH_BUDGET} B allowed for test clips: give at most {fit} audio file(s)")
    p.clip_names = names
    p.lengths = np.array([min(len(c), n) for c in clips])
    p.pcm = np.stack([np.pad(c[:n], (0, n - min(len(c), n))) for c in clips]).astype(np.int16)
    p.expect_input = np.stack([python_frontend.model_input(spec, c, scale, zp) for c in clips])
    x = p.expect_input.reshape((len(clips),) + tuple(inp.shape[1:]))
    for mode in rounding_modes:
        p.expect_logits[mode] = np.asarray(model_logits(x, mode)).reshape(len(clips), -1)
    return p


def _rows(values: np.ndarray, per_line: int = 32) -> list[str]:
    out = []
    for v in values:
        flat = [str(int(x)) for x in np.asarray(v).ravel()]
        out.append(",\n      ".join(", ".join(flat[i:i + per_line]) for i in range(0, len(flat), per_line)))
    return out


def cmake_context(p: FrontendPlan | None) -> dict:
    """Template variables of CMakeLists.txt.j2 for the front end."""
    if p is None:
        return {"frontend": False}
    return {"frontend": True, "cmsis_dsp_path": p.cmsis_dsp.as_posix(),
            "cmsis_dsp_sources": [s for s in cmsis_dsp.SOURCES]}


def write(p: FrontendPlan, out: Path, version: str, source: str) -> None:
    """The front end's files into the (temporary) project directory ``out``."""
    for name, text in p.files.items():
        (out / name).write_text(text)
    n = len(p.clip_names)
    ctx = {"version": version, "source": source, "n": n, "names": p.clip_names,
           "lengths": [int(v) for v in p.lengths], "pcm": _rows(p.pcm), "inputs": _rows(p.expect_input),
           "modes": {mode: {"logits": _rows(v), "classes": [int(c) for c in v.argmax(1)]}
                     for mode, v in p.expect_logits.items()}}
    (out / "audio_vectors.h").write_text(render("frontend_vectors.h.j2", **ctx))
    shutil.copytree(RUNTIME, out / "runtime" / "frontend")
    vec = out / "audio_vectors"
    vec.mkdir()
    np.save(vec / "pcm.npy", p.pcm)
    np.save(vec / "lengths.npy", p.lengths)
    np.save(vec / "inputs.npy", p.expect_input)
    for mode, v in p.expect_logits.items():
        np.save(vec / f"logits_{mode}.npy", v)


def summary(p: FrontendPlan) -> dict:
    return {"feature_spec": p.spec.to_dict(), "input_scale": p.input_scale, "input_zero_point": p.input_zero_point,
            "cmsis_dsp": str(p.cmsis_dsp), "audio_clips": p.clip_names}
