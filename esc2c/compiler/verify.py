"""`esc2c verify OUT`: host equivalence of an emitted project.

1. builds the host variant of OUT with cmake (the requested rounding mode);
2. runs N random int8 inputs through it, dumping every layer's output through the layer hook;
3. compares every layer tensor with onnxruntime on the integer-only ONNX lowering of the IR: must be
   identical; the first differing layer, input and element are named;
4. tflite contract: compares the logits with onnxruntime on the original QDQ model
   (session.qdqisint8allowed=1) and reports the largest difference in LSB (onnxruntime computes the other
   contract); onnxruntime contract: compares the logits and every quantized tensor onnxruntime exposes with
   that session, which must be identical (:func:`check_onnxruntime`);
5. tflite contract: runs every registered extra check (:func:`register_check`), e.g. the TFLite Micro
   comparison (TFLite computes the tflite contract only).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort

from esc2c import cmake, proc
from esc2c.compiler.checks import CheckResult, VerifyContext
from esc2c.compiler.ir import Graph
from esc2c.compiler.lower_onnx import lower_to_onnx, run_int_onnx
from esc2c.compiler.project import Project
from esc2c.compiler.tflm import check_tf_reference, check_tflm
from esc2c.contract import ARITHMETICS, META_ACTIVATIONS, META_FEATURE_SPEC, ONNXRUNTIME, contract_of
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
        arith = ("onnxruntime contract" if contract_of(self.rounding) == ONNXRUNTIME
                 else f"tflite contract, {self.rounding} rounding")
        lines = [f"verify {self.out} ({arith}, {self.n} inputs: {self.n - self.n_features} random "
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


def ort_session(model: str | bytes, optimized: Path | None = None, uint8: bool = False) -> ort.InferenceSession:
    """The onnxruntime contract's reference: the CPU execution provider at full graph optimisation with
    session.qdqisint8allowed=1, so the QDQ groups run as onnxruntime's integer kernels; for a model with
    uint8 activations (``uint8``) also session.x64quantprecision=1, so it runs onnxruntime's exact u8u8
    products on x86 CPUs without VNNI, where the default u8s8 kernels add products in saturating 16-bit pairs
    (VNNI and ARM CPUs are exact either way). The option is not given to int8 models: onnxruntime 1.32 then
    rewrites an int8 QGemm's weights to uint8 and finds no kernel for it."""
    so = ort.SessionOptions()
    so.add_session_config_entry("session.qdqisint8allowed", "1")
    if uint8:
        so.add_session_config_entry("session.x64quantprecision", "1")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    if optimized is not None:
        so.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def qdq_reference(out: Path, g: Graph, inputs: np.ndarray) -> np.ndarray:
    """Logits of the original QDQ model in onnxruntime, requantized to the int8 output scale."""
    sess = ort_session(str(out / "model.onnx"), uint8=_uint8(g))
    name = sess.get_inputs()[0].name
    res = [_requantized_logits(g, sess.run(None, {name: np.ascontiguousarray(xi[None])})[0]).reshape(-1)
           for xi in _float_inputs(g, inputs)]
    return np.stack(res)


def _uint8(g: Graph) -> bool:
    """Whether the QDQ model has uint8 activations (the importer records it)."""
    return g.metadata.get(META_ACTIVATIONS) == "uint8"


def _requantized_logits(g: Graph, y: np.ndarray) -> np.ndarray:
    """The QDQ model's float output back to its int8 codes (exact: it is a DequantizeLinear of them)."""
    o = g.output
    return np.clip(np.rint(y / np.float32(o.scale)) + o.zero_point, -128, 127).astype(np.int64)


def _float_inputs(g: Graph, inputs: np.ndarray) -> np.ndarray:
    """int8 NHWC inputs as the QDQ model's float NCHW input (its first QuantizeLinear gives them back)."""
    t = g.input
    x = (inputs.astype(np.float32) - t.zero_point) * np.float32(t.scale)
    return x.transpose(0, 3, 1, 2) if x.ndim == 4 else x


# exact data movement onnxruntime adds to give an NHWC kernel's tensor back in NCHW
_LAYOUT_OPS = ("Transpose",)


def _op_types(path: Path) -> list[str]:
    """The compute node types of an optimised model (its layout transposes left out)."""
    return sorted(n.op_type for n in onnx.load(str(path)).graph.node if n.op_type not in _LAYOUT_OPS)


def exposed_tensors(model: onnx.ModelProto, g: Graph, work: Path) -> tuple[ort.InferenceSession, list[str], str]:
    """(the onnxruntime session of the QDQ model with extra graph outputs, the IR tensors they show, how they
    were chosen).

    Every layer output of the IR is a QuantizeLinear output of the QDQ model (the importer names it so),
    except the tensors the importer adds (a pool's rescale, a padded input). Those QuantizeLinear outputs
    become graph outputs of int8/uint8 type; onnxruntime keeps them as the outputs of its fused kernels
    (QLinearConv, QLinearAdd, ...). That this changes nothing is checked: the optimised graph must hold the
    same compute node types with and without the extra outputs (onnxruntime adds Transposes to give an NHWC
    kernel's output back in NCHW: exact), else only the model's own outputs are compared."""
    consts = {t.name: t for t in model.graph.initializer}
    q_type = {}
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear":
            zp = consts.get(n.input[2]) if len(n.input) > 2 else None
            q_type[n.output[0]] = zp.data_type if zp is not None else onnx.TensorProto.UINT8
    existing = {o.name for o in model.graph.output}
    names = [op.output for op in g.layer_ops() if op.output in q_type]
    extra = onnx.ModelProto()
    extra.CopyFrom(model)
    for name in names:
        if name not in existing:
            extra.graph.output.append(onnx.helper.make_tensor_value_info(name, q_type[name], None))
    plain = ort_session(model.SerializeToString(), work / "ort_plain.onnx", uint8=_uint8(g))
    exposed = ort_session(extra.SerializeToString(), work / "ort_exposed.onnx", uint8=_uint8(g))
    if _op_types(work / "ort_plain.onnx") != _op_types(work / "ort_exposed.onnx"):
        return plain, [], ("the model's outputs only: exposing its QuantizeLinear outputs changed onnxruntime's "
                           "fused graph")
    return exposed, names, (f"{len(names)} of {len(g.layer_ops())} layer tensors: the QuantizeLinear outputs, made "
                            f"graph outputs (onnxruntime's fused kernels unchanged)")


def check_onnxruntime(out: Path, g: Graph, inputs: np.ndarray, c: dict[str, np.ndarray],
                      work: Path) -> CheckResult:
    """The onnxruntime contract's check: the C equals onnxruntime's session on the original QDQ file
    (ort_session) on the logits and every quantized tensor the session exposes, element for element."""
    name = "C == onnxruntime on the QDQ model (logits and every exposed tensor)"
    model = onnx.load(str(out / "model.onnx"))
    sess, names, how = exposed_tensors(model, g, work)
    if g.outputs[0] not in names:
        names.append(g.outputs[0])  # the logits: the float model output, quantized again below
    in_name = sess.get_inputs()[0].name
    out_names = [o.name for o in sess.get_outputs()]
    x = _float_inputs(g, inputs)
    got: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for xi in x:
        res = dict(zip(out_names, sess.run(None, {in_name: np.ascontiguousarray(xi[None])})))
        for n in names:
            if n in res:
                v = res[n]
                v = v.astype(np.int64) - 128 if v.dtype == np.uint8 else v.astype(np.int64)
            else:  # the logits behind the model's float output
                v = _requantized_logits(g, res[out_names[0]])
            got[n].append(v.transpose(0, 2, 3, 1) if v.ndim == 4 else v)
    per, bad_first = [], None
    total = 0
    for n in names:
        ref = np.concatenate(got[n]).reshape(c[n].shape)
        diff = int((ref != c[n]).sum())
        total += ref.size
        per.append((n, diff, ref.size))
        if diff and bad_first is None:
            idx = tuple(int(i) for i in np.argwhere(ref != c[n])[0])
            bad_first = (f"first difference in tensor '{n}', input {idx[0]}, element {idx[1:]} (NHWC): C "
                         f"{int(c[n][idx])} vs onnxruntime {int(ref[idx])}")
    counts = "; ".join(f"{n}: {d}/{sz}" for n, d, sz in per if d) or "none"
    if bad_first:
        return CheckResult(name, False, f"{bad_first}; differing elements per tensor: {counts} (compared: {how})")
    return CheckResult(name, True, f"0 differing elements in {len(per)} tensors, {total} elements (compared: {how})")


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
    if rounding not in ARITHMETICS or contract_of(rounding) != project.contract:
        raise Esc2cError(f"rounding {rounding!r}: the project was emitted for the {project.contract} contract "
                         f"({project.rounding}); a project is verified in its own contract (tflite: double or "
                         f"single; emit again with --contract for the other)")
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
    if project.contract == ONNXRUNTIME:
        report.checks.append(check_onnxruntime(out, g, inputs, c, work))
        return report
    q = qdq_reference(out, g, inputs)
    lsb = int(np.abs(q - c_logits).max())
    report.checks.append(CheckResult("C logits vs QDQ ONNX (onnxruntime)", lsb <= qdq_tolerance,
                                     f"max difference {lsb} LSB (tolerance {qdq_tolerance}; onnxruntime computes "
                                     f"the onnxruntime contract); argmax agrees on "
                                     f"{int((q.argmax(1) == c_logits.argmax(1)).sum())}/{n}"))
    ctx = VerifyContext(out, g, rounding, inputs, c_logits.astype(np.int8), c)
    for check in EXTRA_CHECKS:  # TFLite computes the tflite contract
        report.checks.append(check(ctx))
    return report
