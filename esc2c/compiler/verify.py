"""`esc2c verify OUT`: host equivalence of an emitted project.

1. builds the host variant of OUT with cmake (the requested rounding mode);
2. runs N random int8 inputs through it, dumping every layer's output through the layer hook;
3. compares every layer tensor with onnxruntime on the integer-only ONNX lowering of the IR: must be
   identical; the first differing layer, input and element are named;
4. compares the logits with onnxruntime on the original QDQ model (session.qdqisint8allowed=1) and
   reports the largest difference in LSB (a sanity check: ORT rounds in float32);
5. runs every registered extra check (:func:`register_check`), e.g. the TFLite Micro comparison.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort

from esc2c import cmake, proc
from esc2c.compiler.checks import CheckResult, VerifyContext
from esc2c.compiler.ir import Graph
from esc2c.compiler.lower_onnx import lower_to_onnx, run_int_onnx
from esc2c.compiler.project import Project
from esc2c.compiler.tflm import check_tf_reference, check_tflm
from esc2c.contract import META_FEATURE_SPEC, ROUNDING_MODES
from esc2c.data import synthetic
from esc2c.errors import Esc2cError
from esc2c.features import FeatureSpec, logmel
from esc2c.quant import intparams


@dataclass
class VerifyReport:
    out: Path
    rounding: str
    n: int
    checks: list[CheckResult] = field(default_factory=list)
    elements_compared: int = 0
    n_features: int = 0  # of the n inputs, how many are log-mel features of sound clips (the rest random)
    strict: bool = False  # a check that did not run fails the verification

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if c.ran and not c.ok]

    @property
    def not_run(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.ran]

    @property
    def ok(self) -> bool:
        """No check that ran failed (and, when strict, every check ran)."""
        return not self.failed and not (self.strict and self.not_run)

    def summary(self) -> str:
        passed = sum(c.ran and c.ok for c in self.checks)
        words = [f"{passed} of {len(self.checks)} checks passed"]
        if self.failed:
            words.append(f"failed: {', '.join(c.name for c in self.failed)}")
        if self.not_run:
            words.append(f"not run: {', '.join(c.name for c in self.not_run)}"
                         + (" (--strict)" if self.strict else ""))
        return f"{'PASS' if self.ok else 'FAIL'} ({'; '.join(words)})"

    def text(self) -> str:
        lines = [f"verify {self.out} ({self.rounding} rounding, {self.n} inputs: {self.n - self.n_features} random "
                 f"int8, {self.n_features} log-mel features of sound clips)"]
        lines += [f"  [{c.status}] {c.name}: {'NOT RUN: ' if not c.ran else ''}{c.detail}" for c in self.checks]
        lines.append(self.summary())
        return "\n".join(lines)


# the TFLite Micro reference path (DESIGN.md section 3, path 2) and TensorFlow's own kernels (optional)
EXTRA_CHECKS: list[Callable[[VerifyContext], CheckResult]] = [check_tflm, check_tf_reference]


def register_check(fn: Callable[[VerifyContext], CheckResult]) -> Callable[[VerifyContext], CheckResult]:
    """Add a check run by every verify (usable as a decorator)."""
    if fn not in EXTRA_CHECKS:
        EXTRA_CHECKS.append(fn)
    return fn


def build_host(out: Path, rounding: str, extra_args: tuple[str, ...] = ()) -> Path:
    build = out / f"build-host-{rounding}"
    cmake.configure(out, build, [f"-DESC2C_ROUNDING={rounding.upper()}", *extra_args], "cmake configure")
    cmake.build(build, None, "host build")
    exe = build / "esc2c_host"
    if not exe.is_file():
        raise Esc2cError(f"{out}: the host build produced no esc2c_host")
    return exe


def run_host(exe: Path, g: Graph, inputs: np.ndarray, work: Path, timeout: float = 600.0) -> dict[str, np.ndarray]:
    """Run the C build on inputs [N, ...]; returns IR tensor name -> [N, ...] for every layer output."""
    layers = g.layer_ops()
    sizes = [g.tensors[op.output].size for op in layers]
    fin, fout = work / "inputs.bin", work / "layers.bin"
    fin.write_bytes(np.ascontiguousarray(inputs, dtype=np.int8).tobytes())
    r = proc.run([str(exe), str(fin), str(fout)], f"host run of {exe}", timeout)
    if r.returncode != 0:
        raise Esc2cError(f"host run of {exe} failed (exit code {r.returncode}):\n{proc.tail(r.out + r.err)}")
    raw = np.frombuffer(fout.read_bytes(), dtype=np.int8)
    n = len(inputs)
    if raw.size != n * sum(sizes):
        raise Esc2cError(f"host run wrote {raw.size} bytes, expected {n * sum(sizes)}")
    per = raw.reshape(n, sum(sizes))
    res, pos = {}, 0
    for op, s in zip(layers, sizes):
        res[op.output] = per[:, pos:pos + s].reshape((n,) + tuple(g.tensors[op.output].shape[1:]))
        pos += s
    return res


def compare_layers(g: Graph, c: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> CheckResult:
    total = 0
    for op in g.layer_ops():
        name = op.output
        a, b = c[name], ref[name].reshape(c[name].shape)
        total += a.size
        bad = np.argwhere(a != b)
        if bad.size:
            idx = tuple(int(i) for i in bad[0])
            n_bad = len(bad)
            return CheckResult("C == integer ONNX (every tensor)", False,
                               f"first difference in layer '{op.name}' ({op.kind}), input {idx[0]}, element "
                               f"{idx[1:]} (NHWC): C {int(a[idx])} vs ONNX {int(b[idx])}; {n_bad} of {a.size} "
                               f"elements differ in that layer")
    return CheckResult("C == integer ONNX (every tensor)", True,
                       f"0 differing elements in {len(g.layer_ops())} layers, {total} elements")


def qdq_reference(out: Path, g: Graph, inputs: np.ndarray) -> np.ndarray:
    """Logits of the original QDQ model in onnxruntime, requantized to the int8 output scale."""

    so = ort.SessionOptions()
    so.add_session_config_entry("session.qdqisint8allowed", "1")
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(out / "model.onnx"), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    t = g.input
    x = (inputs.astype(np.float32) - t.zero_point) * np.float32(t.scale)
    if x.ndim == 4:
        x = x.transpose(0, 3, 1, 2)
    o = g.output
    res = []
    for xi in x:
        y = sess.run(None, {name: np.ascontiguousarray(xi[None])})[0]
        res.append(np.clip(np.rint(y / o.scale) + o.zero_point, -128, 127).reshape(-1))
    return np.stack(res).astype(np.int64)


def feature_inputs(g: Graph, n: int, seed: int = 0) -> np.ndarray:
    """int8 inputs from real log-mel features: clips of the built-in synthetic sound set through the
    model's FeatureSpec (ONNX metadata ``esc2c.feature_spec``), quantized with the input scale/zero point.
    Empty when the model carries no FeatureSpec or its shape does not match the input."""
    text = g.metadata.get(META_FEATURE_SPEC)
    if not text or n <= 0 or len(g.input.shape) != 4:
        return np.zeros((0,) + tuple(g.input.shape[1:]), np.int8)
    spec = FeatureSpec.from_json(text)
    if (1,) + tuple(spec.shape) != (g.input.shape[3], g.input.shape[1], g.input.shape[2]):
        return np.zeros((0,) + tuple(g.input.shape[1:]), np.int8)
    audio = np.stack([synthetic.render(i % 10, i, seed, spec.sample_rate, spec.n_samples) for i in range(n)])
    feats = logmel(spec, audio)  # [n, n_mels, frames] = NCHW without C
    q = intparams.quantize(feats, g.input.scale, g.input.zero_point)
    return q[..., None]  # NHWC with C = 1


def verify(out: str | Path, n: int = 20, rounding: str | None = None, seed: int = 1234,
           qdq_tolerance: int = 1, n_features: int = 4, timeout: float = 600.0,
           extra_args: tuple[str, ...] = (), strict: bool = False) -> VerifyReport:
    """``rounding``: None = the one the project was emitted with; ``timeout``: seconds for the host run of
    the C build; ``extra_args``: CMake options of the host build (e.g. ``-DESC2C_SANITIZE=ON``); ``strict``:
    a check that did not run fails the report. The checks read the IR emit wrote (model.ir.json/.npz)."""
    out = Path(out)
    project = Project.open(out)
    rounding = project.rounding if rounding is None else rounding
    if rounding not in ROUNDING_MODES:
        raise Esc2cError(f"rounding must be one of {', '.join(ROUNDING_MODES)}, got {rounding!r}")
    if n < 1:
        raise Esc2cError("--n must be at least 1")
    g = project.graph
    rng = np.random.default_rng(seed)
    inputs = rng.integers(-128, 128, (n,) + tuple(g.input.shape[1:]), dtype=np.int64).astype(np.int8)
    feats = feature_inputs(g, n_features, seed)
    inputs = np.concatenate([inputs, feats])
    report = VerifyReport(out, rounding, len(inputs), strict=strict)
    report.n_features = len(feats)
    exe = build_host(out, rounding, extra_args)
    work = exe.parent
    c = run_host(exe, g, inputs, work, timeout)
    n = len(inputs)
    ref = run_int_onnx(lower_to_onnx(g, rounding), inputs)
    report.checks.append(compare_layers(g, c, ref))
    report.elements_compared = sum(v.size for v in c.values())
    c_logits = c[g.outputs[0]].reshape(n, -1).astype(np.int64)
    q = qdq_reference(out, g, inputs)
    lsb = int(np.abs(q - c_logits).max())
    report.checks.append(CheckResult("C logits vs QDQ ONNX (onnxruntime)", lsb <= qdq_tolerance,
                                     f"max difference {lsb} LSB (tolerance {qdq_tolerance}); argmax agrees on "
                                     f"{int((q.argmax(1) == c_logits.argmax(1)).sum())}/{n}"))
    ctx = VerifyContext(out, g, rounding, inputs, c_logits.astype(np.int8), c)
    for check in EXTRA_CHECKS:
        report.checks.append(check(ctx))
    return report
