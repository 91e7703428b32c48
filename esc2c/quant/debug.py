"""Per-layer quantization debugger: where does the INT8 model lose its accuracy?

For every tensor of an integer program (:meth:`esc2c.quant.qat.QATNet.integer_program`) it compares, over a
batch of inputs:

* the float model the QAT net was built from (an :class:`~esc2c.models.blocks.ESCNet`, activations taken
  with forward hooks under the QAT net's layer names),
* the fake-quant forward of the QAT net (float values on the int8 grid),
* the exact integer program (:func:`esc2c.quant.reference.run`),
* optionally the int8 tensors of the C build of an emitted project.

Figures per layer: SQNR in dB of each quantized path against the float model (``10 log10(sum f^2 / sum
(f - q)^2)``, infinite when they are equal), the largest absolute error of the integer program against the
float model in the layer's output LSBs and in real units, the fraction of identical int8 elements between the
fake-quant codes and the integer program (and between the C and the integer program), and the SQNR the layer
itself loses (``drop_db``: the lowest SQNR of its inputs minus the SQNR of its output, integer path), which
names the layer that costs the accuracy. For the logits: top-1 agreement of each path with the float model
(and accuracy when labels are given).

Statistics accumulate batch by batch (:class:`QuantDebugger`), so a few hundred inputs of a real model never
hold every activation of every input in memory at once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from esc2c.contract import DEFAULT_ROUNDING
from esc2c.errors import Esc2cError
from esc2c.models.blocks import BasicBlock, ESCNet
from esc2c.quant import qat, reference

PATHS = ("fq", "int", "c")
PATH_NAMES = {"fq": "fake-quant", "int": "integer program", "c": "C (host build)"}


def sqnr_db(signal_power: float, noise_power: float) -> float:
    """SQNR in dB from the summed squares of the reference and of the error: inf without error."""
    if noise_power == 0.0:
        return math.inf
    if signal_power == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal_power / noise_power)


def dequantize(codes: np.ndarray, tensor: dict) -> np.ndarray:
    """Real values of int8 codes on a program tensor's grid (float64)."""
    return (codes.astype(np.float64) - int(tensor["zero_point"])) * float(tensor["scale"])


def codes_of(values: np.ndarray, tensor: dict) -> np.ndarray:
    """int8 codes of real values on a program tensor's grid (round half to even, clamp)."""
    q = np.rint(np.asarray(values, dtype=np.float64) / float(tensor["scale"])) + int(tensor["zero_point"])
    return np.clip(q, -128, 127).astype(np.int8)


# ------------------------------------------------------------------------------------------------ the paths
@torch.no_grad()
def float_activations(model: ESCNet, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Every activation of a float ESCNet under the names the QAT net gives the same tensors (``input``,
    ``s{i}.{j}``, ``s{i}.{j}.conv1|conv2|shortcut``, ``head.gap``, ``head.flatten``, ``head.fc{k}``,
    ``logits``)."""
    model = model.eval()
    acts: dict[str, torch.Tensor] = {"input": x}
    hooks = []

    def keep(name):
        def hook(_module, _inp, out):
            acts[name] = out
        return hook

    try:
        for i, stage in enumerate(model.stages):
            for j, m in enumerate(stage):
                hooks.append(m.register_forward_hook(keep(f"s{i}.{j}")))
                if isinstance(m, BasicBlock):
                    for part in ("conv1", "conv2", "shortcut"):
                        if getattr(m, part) is not None:
                            hooks.append(getattr(m, part).register_forward_hook(keep(f"s{i}.{j}.{part}")))
        for k, layer in enumerate(model.head.hidden):
            hooks.append(layer.register_forward_hook(keep(f"head.fc{k}")))
        hooks.append(model.head.fc.register_forward_hook(keep("logits")))
        hooks.append(model.head.register_forward_pre_hook(
            lambda _m, inp: acts.update({"head.gap": torch.mean(inp[0], dim=(2, 3), keepdim=True)})))
        model(x)
    finally:
        for h in hooks:
            h.remove()
    acts["head.flatten"] = torch.flatten(acts["head.gap"], 1)
    return {k: v.detach().cpu().double().numpy() for k, v in acts.items()}


@torch.no_grad()
def fake_quant_activations(qnet: qat.QATNet, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Every named tensor of the QAT net's fake-quant forward (eval mode: quantizers frozen)."""
    was_training = qnet.training
    qnet.eval()
    rec: dict = {}
    qnet._trunk(x, rec)
    qnet.train(was_training)
    return {k: v.t.detach().cpu().double().numpy() for k, v in rec.items()}


# ------------------------------------------------------------------------------------------------ statistics
@dataclass
class _Acc:
    """Running sums for one (layer, path) pair."""
    signal: float = 0.0       # sum f^2 of the float reference
    noise: float = 0.0        # sum (f - q)^2
    max_err: float = 0.0      # max |f - q| in real units
    same: int = 0             # int8 elements identical to the integer program
    max_code_diff: int = 0    # max |codes - integer program codes|
    n: int = 0


@dataclass
class QuantDebug:
    """The per-layer comparison: ``layers`` (one dict per program tensor, execution order) and ``logits``."""
    layers: list[dict]
    logits: dict
    n_inputs: int
    paths: list[str]
    has_float: bool
    worst: str | None = None
    notes: list[str] = field(default_factory=list)

    def layer(self, name: str) -> dict:
        for row in self.layers:
            if row["name"] == name:
                return row
        raise Esc2cError(f"quant debug: no layer {name!r}")

    def to_dict(self) -> dict:
        """JSON-ready (infinite SQNR written as the strings "inf" / "-inf")."""
        def clean(v):
            if isinstance(v, float) and not math.isfinite(v):
                return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
            if isinstance(v, dict):
                return {k: clean(w) for k, w in v.items()}
            if isinstance(v, list):
                return [clean(w) for w in v]
            return v
        return clean({"n_inputs": self.n_inputs, "paths": self.paths, "has_float": self.has_float,
                      "worst_layer": self.worst, "layers": self.layers, "logits": self.logits, "notes": self.notes})


class QuantDebugger:
    """Accumulates the per-layer comparison of an integer program over batches.

    ``add_batch`` takes the integer program's codes (required), and optionally the float model's activations,
    the fake-quant activations and the C build's codes (NCHW like the program), each a {tensor name: array}
    dict; ``labels`` scores the logits."""

    def __init__(self, program: dict):
        self.program = program
        self.T = program["tensors"]
        self.order = [program["input"]] + [L["output"] for L in program["layers"]]
        self.ops = {program["input"]: "quantize", **{L["output"]: L["op"] for L in program["layers"]}}
        self.inputs = {L["output"]: list(L["inputs"]) for L in program["layers"]}
        self.acc: dict[tuple[str, str], _Acc] = {}
        self.n = 0
        self.has_float = None
        self.paths_seen: set[str] = set()
        self.top1 = {p: 0 for p in PATHS}
        self.correct = {p: 0 for p in ("float",) + PATHS}
        self.labelled = 0

    def _get(self, name, path) -> _Acc:
        return self.acc.setdefault((name, path), _Acc())

    def add_batch(self, int_codes: dict, float_vals: dict | None = None, fq_vals: dict | None = None,
                  c_codes: dict | None = None, labels=None) -> None:
        has_float = float_vals is not None
        if self.has_float is None:
            self.has_float = has_float
        elif self.has_float != has_float:
            raise Esc2cError("quant debug: every batch must come with the float model's activations, or none")
        out = self.program["output"]
        n = len(int_codes[out])
        paths = {"int": int_codes}
        if fq_vals is not None:
            paths["fq"] = {k: codes_of(v, self.T[k]) for k, v in fq_vals.items() if k in self.T}
        if c_codes is not None:
            paths["c"] = c_codes
        self.paths_seen.update(paths)
        for name in self.order:
            t = self.T[name]
            ref_int = int_codes[name].reshape(n, -1)
            f = float_vals[name].reshape(n, -1) if has_float and name in float_vals else None
            if has_float and f is None:
                raise Esc2cError(f"quant debug: the float model has no tensor {name!r}")
            for p, codes in paths.items():
                if name not in codes:
                    continue
                c = np.asarray(codes[name]).reshape(n, -1)
                if c.shape != ref_int.shape:
                    raise Esc2cError(f"quant debug: tensor {name!r} of the {PATH_NAMES[p]} has shape {c.shape[1:]}, "
                                     f"the integer program {ref_int.shape[1:]}")
                a = self._get(name, p)
                diff = np.abs(c.astype(np.int64) - ref_int.astype(np.int64))
                a.same += int(np.sum(diff == 0))
                a.max_code_diff = max(a.max_code_diff, int(diff.max(initial=0)))
                a.n += c.size
                if f is not None:
                    # the fake-quant error is that of its real values, not of their re-rounded codes
                    q = fq_vals[name].reshape(n, -1) if p == "fq" else dequantize(c, t)
                    err = f - q
                    a.signal += float(np.sum(f * f))
                    a.noise += float(np.sum(err * err))
                    a.max_err = max(a.max_err, float(np.abs(err).max(initial=0.0)))
        if has_float:
            top_f = float_vals[out].reshape(n, -1).argmax(1)
            for p, codes in paths.items():
                if out in codes:
                    self.top1[p] += int(np.sum(np.asarray(codes[out]).reshape(n, -1).argmax(1) == top_f))
        if labels is not None:
            y = np.asarray(labels).reshape(-1)
            self.labelled += n
            if has_float:
                self.correct["float"] += int(np.sum(float_vals[out].reshape(n, -1).argmax(1) == y))
            for p, codes in paths.items():
                if out in codes:
                    self.correct[p] += int(np.sum(np.asarray(codes[out]).reshape(n, -1).argmax(1) == y))
        self.n += n

    def result(self) -> QuantDebug:
        if self.n == 0:
            raise Esc2cError("quant debug: no inputs were compared")
        paths = [p for p in PATHS if p in self.paths_seen]
        rows, sq_int = [], {}
        for name in self.order:
            t = self.T[name]
            s = float(t["scale"])
            row = {"name": name, "op": self.ops[name], "shape": list(t["shape"]), "scale": s,
                   "zero_point": int(t["zero_point"])}
            for p in paths:
                a = self.acc.get((name, p))
                if a is None:
                    continue
                if p != "int":
                    row[f"{p}_agree"] = a.same / a.n
                    row[f"{p}_max_code_diff"] = a.max_code_diff
                if self.has_float:
                    row[f"{p}_sqnr_db"] = sqnr_db(a.signal, a.noise)
                    row[f"{p}_max_err"] = a.max_err
                    row[f"{p}_max_err_lsb"] = a.max_err / s
            if self.has_float:
                sq_int[name] = row["int_sqnr_db"]
                ins = self.inputs.get(name)
                row["drop_db"] = None if not ins else min(sq_int[i] for i in ins) - sq_int[name]
                if row["drop_db"] is not None and math.isnan(row["drop_db"]):
                    row["drop_db"] = 0.0
            rows.append(row)
        logits = {"n": self.n}
        if self.has_float:
            logits.update({f"{p}_top1_agree": self.top1[p] / self.n for p in paths})
        if self.labelled:
            logits.update({f"{p}_acc": self.correct[p] / self.labelled
                           for p in (["float"] if self.has_float else []) + paths})
        worst = None
        drops = [(r["drop_db"], r["name"]) for r in rows if r.get("drop_db") is not None]
        if drops:
            worst = max(drops)[1]
        return QuantDebug(rows, logits, self.n, paths, bool(self.has_float), worst)


# ------------------------------------------------------------------------------------------------ the driver
def _batches(x, batch: int):
    for i in range(0, len(x), batch):
        yield i, x[i:i + batch]


@torch.no_grad()
def debug_qat(qnet: qat.QATNet, float_model: ESCNet | None, x, labels=None, rounding: str = DEFAULT_ROUNDING,
              c_runner=None, batch: int = 64) -> QuantDebug:
    """Compare ``float_model`` (None: no float column), the fake-quant forward of ``qnet``, its exact integer
    program and optionally the C: ``c_runner(x_int8 NCHW) -> {program tensor name: int8 NCHW}`` for the
    tensors the C build keeps. ``x``: float features [N, C, H, W] (numpy or torch), normalised like the
    training data."""
    x = torch.as_tensor(np.asarray(x, dtype=np.float32))
    if x.ndim != 4 or len(x) == 0:
        raise Esc2cError(f"quant debug: inputs must be a non-empty [N, C, H, W] batch, got shape {tuple(x.shape)}")
    program = qnet.integer_program(tuple(x.shape[1:]))
    dbg = QuantDebugger(program)
    for i, xb in _batches(x, batch):
        xi = qat.quantize_input(qnet, xb)
        ints = reference.run(program, xi, rounding)
        flt = float_activations(float_model, xb) if float_model is not None else None
        fq = fake_quant_activations(qnet, xb)
        c = c_runner(xi) if c_runner is not None else None
        dbg.add_batch(ints, flt, fq, c, None if labels is None else np.asarray(labels)[i:i + len(xb)])
    return dbg.result()
