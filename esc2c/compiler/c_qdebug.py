"""An emitted project's C, as a column of the quantization debugger (:mod:`esc2c.quant.debug`).

The host build of the project (the one ``esc2c verify`` builds) runs the inputs and dumps every layer's int8
output; each IR tensor ``T_q`` is the program tensor ``T`` of the QDQ model the project was emitted from
(:func:`esc2c.quant.export.program_from_onnx`). Tensors the C never stores (a conv fused with its pool, a
flatten that is only a view) have no C column.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from esc2c.compiler.ir import Graph
from esc2c.compiler.verify import build_host, feature_inputs, run_host
from esc2c.compiler.project import Project as EmittedProject
from esc2c.contract import TFLITE
from esc2c.errors import Esc2cError
from esc2c.quant import export, reference
from esc2c.quant.debug import QuantDebug, QuantDebugger


@dataclass
class Project:
    out: Path
    graph: Graph
    program: dict
    rounding: str          # the project's default rounding (esc2c.json)
    exe: Path | None = None

    def tensor_map(self) -> dict[str, str]:
        """IR layer output -> program tensor, for the tensors both have."""
        names = {}
        for op in self.graph.layer_ops():
            t = op.output
            if t.endswith("_q") and t[:-2] in self.program["tensors"]:
                names[t] = t[:-2]
        return names

    def build(self, rounding: str) -> None:
        self.exe = build_host(self.out, rounding)

    def run_c(self, x_int8_nchw: np.ndarray) -> dict[str, np.ndarray]:
        """The C build on int8 NCHW inputs: {program tensor: int8 array in the program's NCHW layout}."""
        if self.exe is None:
            raise Esc2cError(f"{self.out}: the host build has not been built (call build() first)")
        x = np.asarray(x_int8_nchw, dtype=np.int8)
        if x.ndim == 4:
            x = x.transpose(0, 2, 3, 1)  # NCHW -> NHWC, the C input layout
        c = run_host(self.exe, self.graph, np.ascontiguousarray(x), self.exe.parent)
        res = {}
        for ir_name, t in self.tensor_map().items():
            v = c[ir_name]
            res[t] = v.transpose(0, 3, 1, 2) if v.ndim == 4 else v.reshape(len(x), -1)
        return res

    def sample_inputs(self, n: int, seed: int = 0) -> np.ndarray:
        """int8 NCHW inputs without a dataset: log-mel features of the built-in synthetic clips through the
        model's FeatureSpec, or seeded random int8 when the model has none."""
        x = feature_inputs(self.graph, n, seed)
        if len(x) == 0:
            rng = np.random.default_rng(seed)
            x = rng.integers(-128, 128, (n,) + tuple(self.graph.input.shape[1:]), dtype=np.int64).astype(np.int8)
        return x.transpose(0, 3, 1, 2) if x.ndim == 4 else x


def is_project(path: str | Path) -> bool:
    p = Path(path)
    return (p / "CMakeLists.txt").is_file() and (p / "model.onnx").is_file() and (p / "esc2c.json").is_file()


def load_project(path: str | Path) -> Project:
    out = Path(path)
    if not is_project(out):
        raise Esc2cError(f"{out}: not an emitted project (no CMakeLists.txt, model.onnx and esc2c.json)")
    emitted = EmittedProject.open(out)  # the IR the project was emitted from, not a recompilation
    if emitted.contract != TFLITE:
        raise Esc2cError(f"{out}: emitted for the {emitted.contract} contract; the quantization debugger compares the "
                         f"C with the QAT program, which computes the tflite contract (emit with --contract tflite)")
    try:
        program = export.program_from_onnx(onnx.load(str(out / "model.onnx")))
    except (KeyError, IndexError) as e:
        raise Esc2cError(f"{out / 'model.onnx'}: not an esc2c QDQ export (no tensor {e})") from None
    return Project(out, emitted.graph, program, emitted.rounding)


def same_program(a: dict, b: dict) -> str | None:
    """None when two integer programs have the same tensors, quantization and weights, else what differs."""
    if [L["output"] for L in a["layers"]] != [L["output"] for L in b["layers"]]:
        return "the layers differ"
    for name, t in a["tensors"].items():
        u = b["tensors"].get(name)
        if (u is None or np.float32(t["scale"]) != np.float32(u["scale"])
                or int(t["zero_point"]) != int(u["zero_point"])):
            return f"tensor {name!r} has another scale or zero point"
    for L, M in zip(a["layers"], b["layers"]):
        for key in ("weight", "bias"):
            if key in L and not np.array_equal(np.asarray(L[key]), np.asarray(M.get(key))):
                return f"layer {L['name']!r} has other {key}s"
    return None


def debug_project(project: Project, n: int, rounding: str, seed: int = 0, batch: int = 64) -> QuantDebug:
    """The C build against the integer program of its model.onnx, bit for bit, on ``n`` inputs of
    :meth:`Project.sample_inputs` (no float model: SQNR needs one, see ``esc2c qdebug --run``)."""
    if project.exe is None:
        project.build(rounding)
    dbg = QuantDebugger(project.program)
    x = project.sample_inputs(n, seed)
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        dbg.add_batch(reference.run(project.program, xb, rounding), c_codes=project.run_c(xb))
    res = dbg.result()
    res.notes.append("no float model: pass the compress run (--run RUN_DIR) for SQNR and errors in real units")
    return res
