"""TFLite Micro on the host: run a .tflite with the `tflite-micro` interpreter (reference kernels), find
its smallest working tensor arena, and compare it with the compiled C (DESIGN.md section 3, path 2).

  run_tflm(data, inputs)               logits of every input, [N, output size] int8
  run_tflm_tensors(data, index, inputs) every IR tensor TFLM computed (all tensors preserved)
  smallest_arena(data)                 TFLM's smallest arena_size that allocates and runs the model
  emit_tflm(g, dest, inputs, expected) model.tflite and the TFLM firmware variant (templates/tflm/)
  run_tf_reference(data, inputs)       TensorFlow's own interpreter with its reference kernels (optional)
  check_tflm / check_tf_reference      the `esc2c verify` checks (verify.EXTRA_CHECKS)

Arena probes run in a child process: the interpreter can crash the process (not raise) when the arena is
far too small, so each probe size is tried in a worker that is restarted if it dies.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from esc2c import __version__
from esc2c.compiler.checks import CheckResult
from esc2c.compiler.ir import Graph
from esc2c.compiler.lower_onnx import lower_to_onnx, run_int_onnx
from esc2c.compiler.tflite_writer import SCHEMA_VERSION, write_tflite
from esc2c.errors import Esc2cError
from esc2c.templating import render

DEFAULT_ARENA_FACTOR = 10  # the interpreter's own default: 10 x the model size
MAX_ARENA = 1 << 28


def _runtime():
    try:
        from tflite_micro.python.tflite_micro import runtime  # lazy: loads the TFLM native interpreter, only when a .tflite runs
    except ImportError:
        raise Esc2cError("the tflite-micro package is not installed: pip install tflite-micro") from None
    return runtime


def _arena(data: bytes, arena_size: int | None) -> int:
    return int(arena_size) if arena_size else max(1 << 16, DEFAULT_ARENA_FACTOR * len(data))


def interpreter(data: bytes, arena_size: int | None = None, preserve_all: bool = False):
    rt = _runtime()
    cfg = rt.InterpreterConfig.kPreserveAllTensors if preserve_all else rt.InterpreterConfig.kAllocationRecording
    try:
        return rt.Interpreter.from_bytes(bytes(data), arena_size=_arena(data, arena_size), intrepreter_config=cfg)
    except RuntimeError as e:
        raise Esc2cError(f"TFLite Micro could not load the model: {e}") from None


def _inputs_for(it, inputs: np.ndarray) -> np.ndarray:
    d = it.get_input_details(0)
    shape = tuple(int(s) for s in d["shape"])
    x = np.asarray(inputs)
    if x.dtype != np.int8:
        raise Esc2cError(f"TFLite Micro inputs must be int8, got {x.dtype}")
    if int(np.prod(x.shape[1:])) != int(np.prod(shape)):
        raise Esc2cError(f"inputs of shape {x.shape[1:]} do not fit the model input {shape}")
    return x.reshape((len(x),) + shape)


def run_tflm(data: bytes, inputs: np.ndarray, arena_size: int | None = None) -> np.ndarray:
    """Run every input [N, ...] through TFLM; returns the first output flattened, [N, output size] int8."""
    it = interpreter(data, arena_size)
    res = []
    for x in _inputs_for(it, inputs):
        it.set_input(x, 0)
        it.invoke()
        res.append(np.array(it.get_output(0), dtype=np.int8).reshape(-1))
    return np.stack(res)


def run_tflm_tensors(data: bytes, tensor_index: dict[str, int], inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Every named tensor after each run (kPreserveAllTensors): name -> [N, ...] int8."""
    it = interpreter(data, preserve_all=True)
    res: dict[str, list] = {n: [] for n in tensor_index}
    for x in _inputs_for(it, inputs):
        it.set_input(x, 0)
        it.invoke()
        for name, i in tensor_index.items():
            res[name].append(np.array(it.GetTensor(i, 0)["tensor_data"], dtype=np.int8).reshape(-1))
    return {n: np.stack(v) for n, v in res.items()}


# ---------------------------------------------------------------- smallest arena
@dataclass
class ArenaSearch:
    size: int  # smallest arena_size that works
    probes: int
    recorded_total: int  # what the recording allocator reported at a generous size
    recorded_head: int  # of it, the non-persistent (tensor data) part
    model_bytes: int


class _ProbeWorker:
    """A child process that answers "does arena_size N work" for one model, restarted after a crash."""

    def __init__(self, path: Path):
        self.path = path
        self.proc = None
        self.probes = 0

    def _start(self):
        self.proc = subprocess.Popen([sys.executable, "-m", "esc2c.compiler.tflm", "--probe", str(self.path)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, bufsize=1)

    def ask(self, size: int) -> tuple[bool, int, int]:
        self.probes += 1
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        try:
            self.proc.stdin.write(f"{size}\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:  # the interpreter crashed on this size
            self.close()
            return False, 0, 0
        ok, total, head = line.split()
        return ok == "1", int(total), int(head)

    def close(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            self.proc = None


def smallest_arena(data: bytes) -> ArenaSearch:
    """TFLM's smallest working arena_size (allocate + invoke), by bisection between a failing and a
    working size; the recording allocator's total at a generous size seeds the bracket."""
    with tempfile.TemporaryDirectory(prefix="esc2c-tflm-") as d:
        path = Path(d) / "model.tflite"
        path.write_bytes(data)
        w = _ProbeWorker(path)
        try:
            hi = _arena(data, None)
            ok, total, head = w.ask(hi)
            while not ok:
                if hi >= MAX_ARENA:
                    raise Esc2cError(f"TFLite Micro cannot run the model even with a {MAX_ARENA} B arena")
                hi *= 2
                ok, total, head = w.ask(hi)
            # bracket around the recorded total: alignment of the arena start may add a few bytes
            lo = 0
            if total:
                ok_at_total = w.ask(total + 64)[0]
                if ok_at_total:
                    hi = total + 64
                    below = max(0, total - 64)
                    if not w.ask(below)[0]:
                        lo = below
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if w.ask(mid)[0]:
                    hi = mid
                else:
                    lo = mid
            return ArenaSearch(hi, w.probes, total, head, len(data))
        finally:
            w.close()


def arena_works(data: bytes, size: int) -> bool:
    """Whether TFLM allocates and runs the model in an arena of ``size`` bytes (in a child process)."""
    with tempfile.TemporaryDirectory(prefix="esc2c-tflm-") as d:
        path = Path(d) / "model.tflite"
        path.write_bytes(data)
        w = _ProbeWorker(path)
        try:
            return w.ask(size)[0]
        finally:
            w.close()


def recorded_arena(it) -> tuple[int, int]:
    """(total, head) bytes the recording allocator reports for an invoked interpreter; it prints them on
    the C stderr, captured here through a temporary file on fd 2."""

    with tempfile.TemporaryFile() as f:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(f.fileno(), 2)
        try:
            it.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        text = f.read().decode(errors="replace")
    m = re.search(r"allocation total (\d+) bytes", text)
    h = re.search(r"allocation head (\d+) bytes", text)
    return (int(m.group(1)) if m else 0), (int(h.group(1)) if h else 0)


def _probe_main(path: str) -> None:
    """Child side of :class:`_ProbeWorker`: one size per stdin line, answers "ok total head"."""
    rt = _runtime()
    data = Path(path).read_bytes()
    for line in sys.stdin:
        size = int(line)
        ok, total, head = 0, 0, 0
        try:
            it = rt.Interpreter.from_bytes(data, arena_size=size)
            d = it.get_input_details(0)
            it.set_input(np.zeros(tuple(d["shape"]), np.int8), 0)
            it.invoke()
            ok = 1
            total, head = recorded_arena(it)
            del it
        except RuntimeError:
            ok = 0
        sys.stdout.write(f"{ok} {total} {head}\n")
        sys.stdout.flush()


# ---------------------------------------------------------------- the TFLM firmware variant
RESOLVER_ADD = {"CONV_2D": "AddConv2D", "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
                "FULLY_CONNECTED": "AddFullyConnected", "MAX_POOL_2D": "AddMaxPool2D",
                "AVERAGE_POOL_2D": "AddAveragePool2D", "ADD": "AddAdd", "RESHAPE": "AddReshape", "PAD": "AddPad",
                "PADV2": "AddPadV2", "QUANTIZE": "AddQuantize"}


def resolver_add(code: str) -> str:
    """The MicroMutableOpResolver method registering a builtin op: the table above, else Add + the code in
    CamelCase (ABS -> AddAbs), so an op kind writing another builtin needs no entry here."""
    return RESOLVER_ADD.get(code) or "Add" + code.title().replace("_", "")

ARENA_MARGIN = 1024  # beside the host's use: a target with other kernels (CMSIS-NN) may want scratch


def emit_tflm(g: Graph, dest: Path, inputs: np.ndarray, expected: np.ndarray, source: str = "model.onnx") -> str | None:
    """Write dest/model.tflite and the TFLM firmware variant dest/tflm/ (main.cc with an op resolver of
    exactly the ops used, the model as a C array, test vectors, CMakeLists.txt that needs TFLM_PATH).
    Returns None, or why the model has no exact TFLite form (then dest/tflm/UNSUPPORTED.txt says so)."""

    dest = Path(dest)
    (dest / "tflm").mkdir(parents=True, exist_ok=True)
    try:
        m = write_tflite(g)
    except Esc2cError as e:
        (dest / "tflm" / "UNSUPPORTED.txt").write_text(f"no TFLite Micro variant: {e}\n")
        return str(e)
    (dest / "model.tflite").write_bytes(m.data)
    it = interpreter(m.data)
    it.set_input(np.zeros(tuple(it.get_input_details(0)["shape"]), np.int8), 0)
    it.invoke()
    total, _ = recorded_arena(it)
    arena = (total + ARENA_MARGIN + 15) // 16 * 16
    row = lambda v: ", ".join(str(int(x)) for x in np.asarray(v).ravel())  # noqa: E731
    body = ",\n".join("    " + ", ".join(f"0x{b:02x}" for b in m.data[i:i + 16]) for i in range(0, len(m.data), 16))
    ctx = {"version": __version__, "source": source, "model_size": len(m.data), "model_body": body,
           "input_size": g.input.size, "output_size": g.output.size, "n": len(inputs),
           "inputs": [row(v) for v in inputs], "outputs": [row(v) for v in expected], "arena_size": arena,
           "resolver_adds": [resolver_add(c) for c in m.ops_used],
           "schema_version": SCHEMA_VERSION}
    for name in ("main.cc", "model_data.cc", "model_data.h", "CMakeLists.txt"):
        (dest / "tflm" / name).write_text(render(f"tflm/{name}.j2", **ctx))
    return None


# ---------------------------------------------------------------- TensorFlow's reference kernels
def tensorflow_unavailable() -> str | None:
    """None when TensorFlow's TFLite interpreter can be imported, else the reason."""
    try:
        import tensorflow as tf  # noqa: F401
    except Exception as e:  # ImportError, or a broken install
        return f"tensorflow is not importable ({type(e).__name__}: {e}); install the optional extra " \
               f"`pip install esc2c[tensorflow]`"
    return None


def run_tf_reference(data: bytes, inputs: np.ndarray) -> np.ndarray:
    """TensorFlow's TFLite interpreter with its reference kernels (BUILTIN_REF, not XNNPACK)."""
    import tensorflow as tf  # optional extra (esc2c[tensorflow]): the check reports NOT RUN without it

    it = tf.lite.Interpreter(model_content=bytes(data),
                             experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    d_in, d_out = it.get_input_details()[0], it.get_output_details()[0]
    shape = tuple(int(s) for s in d_in["shape"])
    res = []
    for x in np.asarray(inputs, np.int8).reshape((len(inputs),) + shape):
        it.set_tensor(d_in["index"], x[None].reshape(shape))
        it.invoke()
        res.append(np.array(it.get_tensor(d_out["index"]), np.int8).reshape(-1))
    return np.stack(res)


# ---------------------------------------------------------------- verify checks
def model_for(out: Path, g: Graph):
    """The .tflite of the IR; the project's model.tflite (written at emit time) must be the same bytes."""

    m = write_tflite(g)  # raises Esc2cError when the model has no exact TFLite form
    f = Path(out) / "model.tflite"
    if f.is_file() and f.read_bytes() != m.data:
        raise StaleTflite(f"{f} differs from the .tflite written from the project's model.onnx; emit it again")
    return m


class StaleTflite(Exception):
    pass


def first_difference(g: Graph, tensors: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> str | None:
    for op in g.layer_ops():
        name = op.output
        if name not in tensors or name not in ref:
            continue
        a, b = tensors[name].reshape(len(tensors[name]), -1), np.asarray(ref[name]).reshape(len(tensors[name]), -1)
        bad = np.argwhere(a != b)
        if bad.size:
            i, e = (int(v) for v in bad[0])
            return (f"first difference in layer '{op.name}' ({op.kind}), input {i}, flat element {e}: "
                    f"TFLM {int(a[i, e])} vs reference {int(b[i, e])}; {len(bad)} of {a.size} elements differ")
    return None


def check_tflm(ctx):
    """verify: TFLM on the .tflite == the C build on every layer tensor (double rounding); in single
    rounding, TFLM (which rounds twice) is held to the integer ONNX reference in double instead."""

    g = ctx.graph
    if ctx.rounding == "double":
        name, ref_name, ref = "TFLite Micro (tflite-micro interpreter) == C (every tensor)", "C", ctx.c_layers
    else:
        name, ref_name = "TFLite Micro == integer ONNX in double rounding (every tensor)", "integer ONNX"
        ref = run_int_onnx(lower_to_onnx(g, "double"), ctx.inputs)
    try:
        m = model_for(ctx.out, g)
    except StaleTflite as e:
        return CheckResult(name, False, str(e))
    except Esc2cError as e:  # nothing to compare with: said in the report, not counted as a failure
        return CheckResult.not_run(name, f"the model has no exact TFLite form: {e}")
    got = run_tflm_tensors(m.data, m.tensor_index, ctx.inputs)
    where = first_difference(g, got, ref)
    if where:
        return CheckResult(name, False, where)
    n = sum(got[op.output].size for op in g.layer_ops())
    extra = []
    if m.inserted_pads:
        extra.append(f"PAD before {len(m.inserted_pads)} layer(s)")
    if m.pools_as_depthwise:
        extra.append(f"{len(m.pools_as_depthwise)} rescaling average pool(s) as depthwise convolutions")
    return CheckResult(name, True, f"0 differing elements in {len(g.layer_ops())} layers, {n} elements vs "
                       f"{ref_name}" + (f" ({'; '.join(extra)})" if extra else ""))


def check_tf_reference(ctx):
    """verify (optional): TensorFlow's TFLite interpreter, reference kernels, == TFLM on the same .tflite."""

    name = "TensorFlow Lite reference kernels == TFLite Micro"
    reason = tensorflow_unavailable()
    if reason is not None:
        print(f"esc2c verify: skipping the TensorFlow Lite comparison: {reason}", file=sys.stderr)
        return CheckResult.not_run(name, reason)
    try:
        m = model_for(ctx.out, ctx.graph)
    except StaleTflite as e:
        return CheckResult(name, False, str(e))
    except Esc2cError as e:
        return CheckResult.not_run(name, f"the model has no exact TFLite form: {e}")
    try:
        tf_out = run_tf_reference(m.data, ctx.inputs).astype(np.int64)
    except (RuntimeError, ValueError) as e:  # e.g. an op or quantization this TensorFlow's kernels lack
        return CheckResult(name, False, f"TensorFlow Lite could not run model.tflite: {e}")
    tflm = run_tflm(m.data, ctx.inputs).astype(np.int64)
    n_bad = int((tf_out != tflm).sum())
    return CheckResult(name, n_bad == 0, f"{n_bad} of {tflm.size} logits differ"
                       + (f" (max {int(np.abs(tf_out - tflm).max())} LSB)" if n_bad else ""))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--probe":
        _probe_main(sys.argv[2])
    else:
        sys.exit("usage: python -m esc2c.compiler.tflm --probe MODEL.tflite  (sizes on stdin)")
