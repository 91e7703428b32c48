"""Raw audio end to end on the host: the emitted project's C front end + C model (``esc2c_audio_host``)
against the Python pipeline (esc2c.features.logmel in float64 -> QuantizeLinear -> the integer reference
model OUT/model_int.onnx in onnxruntime) on int16 PCM clips."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from esc2c import cmake, proc
from esc2c.compiler.lower_onnx import run_int_onnx
from esc2c.compiler.project import Project
from esc2c.errors import Esc2cError
from esc2c.logmel import python_frontend
from esc2c.logmel.project_files import spec_from_onnx

WORK = ".esc2c"


def build_host(out: str | Path) -> Path:
    """cmake-build OUT for this machine (in OUT/.esc2c/host-audio) and return its esc2c_audio_host."""
    out = Path(out).resolve()
    if not (out / "esc2c_frontend_config.h").is_file():
        raise Esc2cError(f"{out}: the project has no front end (emit a model with a FeatureSpec, or --frontend)")
    build = out / WORK / "host-audio"
    cmake.configure(out, build, ["-DCMAKE_BUILD_TYPE=Release"], f"configuring the host audio build of {out}")
    cmake.build(build, "esc2c_audio_host", f"building esc2c_audio_host of {out}")
    return build / "esc2c_audio_host"


def run_host(exe: Path, pcm: np.ndarray, n_input: int, n_output: int,
             timeout: float = 600.0) -> tuple[np.ndarray, np.ndarray]:
    """(int8 model inputs [clips, n_input], int8 logits [clips, n_output]) of PCM clips [clips, n]."""
    pcm = np.ascontiguousarray(pcm, dtype="<i2")
    r = proc.run([str(exe), str(pcm.shape[1])], f"host audio run of {exe}", timeout, stdin=pcm.tobytes())
    if r.returncode != 0:
        raise Esc2cError(f"{exe} failed ({r.returncode}): {proc.tail(r.err, 5)}")
    if len(r.stdout) != pcm.shape[0] * (n_input + n_output):
        raise Esc2cError(f"{exe} wrote {len(r.stdout)} bytes, expected {pcm.shape[0] * (n_input + n_output)}")
    rec = np.frombuffer(r.stdout, np.int8).reshape(pcm.shape[0], n_input + n_output)
    return rec[:, :n_input], rec[:, n_input:]


@dataclass
class RawAudioReport:
    clips: int
    elements: int
    identical: int
    max_diff: int
    class_agree: int
    c_classes: np.ndarray
    py_classes: np.ndarray

    @property
    def identical_share(self) -> float:
        return self.identical / self.elements

    @property
    def class_agreement(self) -> float:
        return self.class_agree / self.clips

    def text(self) -> str:
        return (f"{self.clips} clips: int8 input identical {self.identical_share:.4%} "
                f"({self.identical}/{self.elements}), max diff {self.max_diff} LSB; predicted class equal on "
                f"{self.class_agree}/{self.clips} ({self.class_agreement:.1%})")


def python_pipeline(out: Path, pcms: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(int8 inputs [clips, n_mels, frames], int8 logits) of the Python pipeline for the project OUT."""
    out = Path(out)
    spec = spec_from_onnx(out / "model.onnx")
    g = Project.open(out).graph  # the IR the project was emitted from
    x = np.stack([python_frontend.model_input(spec, p, float(np.float32(g.input.scale)), g.input.zero_point) for p in pcms])
    logits = run_int_onnx(onnx.load(str(out / "model_int.onnx")), x.reshape((len(pcms),) + tuple(g.input.shape[1:])))
    return x, logits[g.outputs[0]].reshape(len(pcms), -1)


def compare(out: str | Path, pcms: list[np.ndarray]) -> RawAudioReport:
    """The C pipeline (host build of OUT) vs the Python pipeline on the clips ``pcms`` (int16, any length)."""
    out = Path(out)
    spec = spec_from_onnx(out / "model.onnx")
    n = spec.n_samples
    fixed = np.stack([np.pad(p[:n], (0, n - min(len(p), n))) for p in pcms])
    py_x, py_logits = python_pipeline(out, pcms)
    exe = build_host(out)
    c_x, c_logits = run_host(exe, fixed, py_x[0].size, py_logits.shape[1])
    d = np.abs(c_x.astype(np.int32) - py_x.reshape(len(pcms), -1).astype(np.int32))
    cc, pc = c_logits.argmax(1), py_logits.argmax(1)
    return RawAudioReport(len(pcms), d.size, int((d == 0).sum()), int(d.max()), int((cc == pc).sum()), cc, pc)
