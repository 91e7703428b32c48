"""An emitted project read back: what ``esc2c emit`` wrote is what verify, qdebug and audio check.

OUT/esc2c.json       the options (kernels, fuse), the contract and rounding and where they came from, the board
                     fit, layers
OUT/model.ir.json    the compiled IR for reading (weights as shapes and hashes)
OUT/model.ir.npz     the IR's arrays (weights, bias, multipliers, ...): with model.ir.json, the exact IR

Nothing here compiles: a project is checked against the IR it was emitted from, never a recompilation.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from esc2c.compiler.ir import Graph, Op, Tensor
from esc2c.compiler.options import CompileOptions
from esc2c.contract import ARITHMETICS, DEFAULT_ROUNDING, PROJECT_IR, PROJECT_META, TFLITE, contract_of
from esc2c.errors import Esc2cError

IR_ARRAYS = "model.ir.npz"
_ARRAY_FIELDS = ("weights", "weight_scales", "bias", "multiplier", "shift", "avg_mult", "avg_shift", "act")
_OP_FIELDS = ("name", "kind", "inputs", "outputs", "act_min", "act_max", "kernel", "scratch", "macs", "add")


def save_graph(g: Graph, dest: Path) -> None:
    """model.ir.json (readable) and model.ir.npz (the arrays) in ``dest``."""
    (dest / PROJECT_IR).write_text(g.to_json())
    arrays = {}
    for i, op in enumerate(g.ops):
        for f in _ARRAY_FIELDS:
            v = getattr(op, f)
            if v is not None:
                arrays[f"{i}.{f}"] = np.asarray(v)
    with open(dest / IR_ARRAYS, "wb") as fh:
        np.savez(fh, **arrays)


def _tuples(v):
    """JSON lists back to the tuples the passes wrote (IR attrs hold tuples, never lists)."""
    if isinstance(v, list):
        return tuple(_tuples(x) for x in v)
    if isinstance(v, dict):
        return {k: _tuples(x) for k, x in v.items()}
    return v


def load_graph(src: Path) -> Graph:
    """The IR save_graph wrote in ``src``."""
    d = json.loads((src / PROJECT_IR).read_text())
    with np.load(src / IR_ARRAYS, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    tensors = {n: Tensor(**{**t, "shape": tuple(t["shape"])}) for n, t in d["tensors"].items()}
    ops = []
    for i, o in enumerate(d["ops"]):
        op = Op(**{f: o[f] for f in _OP_FIELDS if f in o}, attrs=_tuples(o["attrs"]))
        op.inputs, op.outputs = list(op.inputs), list(op.outputs)
        for f in _ARRAY_FIELDS:
            if f"{i}.{f}" in arrays:
                setattr(op, f, arrays[f"{i}.{f}"])
        if op.act is not None:
            op.act = tuple(float(x) for x in op.act)
        ops.append(op)
    return Graph(tensors=tensors, ops=ops, inputs=d["inputs"], outputs=d["outputs"], layout=d["layout"],
                 contract=d.get("contract", TFLITE), metadata=d["metadata"], arena_size=d["arena_size"],
                 scratch_offset=d["scratch_offset"],
                 scratch_size=d["scratch_size"], plan_stats=d["plan_stats"])


@dataclass
class Project:
    """An emitted project: its directory, esc2c.json and the exact IR it was emitted from."""
    out: Path
    meta: dict
    graph: Graph

    @classmethod
    def open(cls, out: str | Path) -> "Project":
        out = Path(out)
        if not (out / "CMakeLists.txt").is_file() or not (out / "model.onnx").is_file():
            raise Esc2cError(f"{out}: not an emitted project (run `esc2c emit MODEL.onnx -o {out}` first)")
        missing = [f for f in (PROJECT_META, PROJECT_IR, IR_ARRAYS) if not (out / f).is_file()]
        if missing:
            raise Esc2cError(f"{out}: no {', '.join(missing)}: the project was emitted by an older esc2c; "
                             f"emit it again")
        try:
            meta = json.loads((out / PROJECT_META).read_text())
            graph = load_graph(out)
        except (ValueError, KeyError, TypeError, OSError) as e:
            raise Esc2cError(f"{out}: {PROJECT_META} / {PROJECT_IR} / {IR_ARRAYS} unreadable "
                             f"({type(e).__name__}: {str(e)[:120]}); emit the project again") from None
        return cls(out, meta, graph)

    @property
    def rounding(self) -> str:
        """The arithmetic the project was emitted with (its default ESC2C_ROUNDING; "float" under the
        onnxruntime contract)."""
        r = self.meta.get("rounding", DEFAULT_ROUNDING)
        return r if r in ARITHMETICS else DEFAULT_ROUNDING

    @property
    def contract(self) -> str:
        return contract_of(self.rounding)

    @property
    def options(self) -> CompileOptions:
        return CompileOptions(**self.meta.get("options", {}))
