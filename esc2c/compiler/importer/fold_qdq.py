"""Fold QuantizeLinear/DequantizeLinear pairs into the integer IR (ONNX layout, NCHW).

Every QuantizeLinear of a non-constant tensor defines one int8 IR tensor (its output, with its scale and
zero point). The float sub-graph between the DequantizeLinear nodes feeding it and the QuantizeLinear is
one "region"; its anchor op (Conv, Gemm, MatMul [+ Add bias], MaxPool, AveragePool, GlobalAveragePool,
Add, Flatten/Reshape, Relu/Clip, DequantizeLinear: each op kind's ``onnx_anchors``) becomes an IR op, built
by that kind's ``from_onnx`` (esc2c/compiler/ops/), and Relu/Clip nodes between the anchor and the
QuantizeLinear become the op's activation range. A Flatten/Reshape between a DequantizeLinear and a
Gemm/MatMul becomes a reshape view (``onnx_views``).

Accepted producers: esc2c's own export and onnxruntime.quantization.quantize_static (QDQ format):
int8 or uint8 activations (uint8 is shifted to int8 exactly: q - 128, zp - 128), int8 symmetric weights
per tensor (expanded to per-channel equal scales) or per channel, int32 bias (missing -> zeros; float
bias -> quantized with intparams.quantize_bias), pools with their own output scales.
"""
from __future__ import annotations

import math

import numpy as np

from esc2c.compiler import ops
from esc2c.compiler.importer.onnx_model import OnnxModel
from esc2c.compiler.ir import Graph, Op, Tensor
from esc2c.errors import Esc2cError
from esc2c.quant import intparams

_ACTS = ops.activation_onnx_ops()  # Relu, Clip: folded into the region they close


class _Folder:
    def __init__(self, m: OnnxModel):
        self.m = m
        self.tensors: dict[str, Tensor] = {}
        self.ops: list[Op] = []
        self.inputs: list[str] = []
        self.used_names: set[str] = set()

    # ---------------- helpers ----------------
    def err(self, node, msg: str) -> Esc2cError:
        return Esc2cError(f"{self.m.path}: node '{self.m.node_name(node)}' ({node.op_type}): {msg}")

    def shape(self, name: str, node=None) -> tuple[int, ...]:
        if name not in self.m.shapes:
            raise Esc2cError(f"{self.m.path}: tensor '{name}' has no static shape after shape inference"
                             + (f" (node '{self.m.node_name(node)}')" if node is not None else ""))
        return self.m.shapes[name]

    def op_name(self, node) -> str:
        base = node.name or f"{node.op_type.lower()}_{node.output[0]}"
        name, i = base, 1
        while name in self.used_names:
            i += 1
            name = f"{base}_{i}"
        self.used_names.add(name)
        return name

    def qparams(self, node) -> tuple[np.ndarray, np.ndarray, int, bool]:
        """(scale, zero_point int64 in int8 terms, axis, was_uint8) of a Q or DQ node."""
        c = self.m.consts
        if node.input[1] not in c:
            raise self.err(node, "scale is not a constant")
        scale = np.asarray(c[node.input[1]], dtype=np.float64)
        if scale.size == 0 or not np.all(np.isfinite(scale)) or np.any(scale < 0):
            bad = scale.ravel()[~(np.isfinite(scale.ravel()) & (scale.ravel() >= 0))]
            raise self.err(node, f"scale '{node.input[1]}' must be finite and positive, got "
                                 f"{bad[0] if bad.size else 'an empty tensor'}")
        uint8 = False
        if len(node.input) > 2 and node.input[2]:
            if node.input[2] not in c:
                raise self.err(node, "zero point is not a constant")
            zp_arr = c[node.input[2]]
            uint8 = zp_arr.dtype == np.uint8
            zp = zp_arr.astype(np.int64) - (128 if uint8 else 0)
            if zp_arr.dtype not in (np.int8, np.uint8, np.int32):
                raise self.err(node, f"zero point type {zp_arr.dtype} is not int8/uint8/int32")
        else:
            zp = np.zeros_like(scale, dtype=np.int64)
        axis = int(self.m.attr(node, "axis", 1))
        return scale, zp, axis, uint8

    def act_qparams(self, node) -> tuple[float, int, bool]:
        scale, zp, _, uint8 = self.qparams(node)
        if scale.size != 1 or zp.size != 1:
            raise self.err(node, "activations must be quantized per tensor")
        s = float(scale.ravel()[0])
        if not (s > 0 and math.isfinite(s)):
            raise self.err(node, f"scale {s} is not a positive finite number")
        return s, int(zp.ravel()[0]), uint8

    def is_dq(self, name: str) -> bool:
        p = self.m.producer.get(name)
        return p is not None and p.op_type == "DequantizeLinear"

    def skip_identity(self, name: str) -> str:
        p = self.m.producer.get(name)
        while p is not None and p.op_type == "Identity":
            name = p.input[0]
            p = self.m.producer.get(name)
        return name

    def new_tensor(self, name: str, shape, scale: float, zp: int, **kw) -> str:
        if name in self.tensors:
            raise Esc2cError(f"{self.m.path}: tensor '{name}' is quantized twice")
        self.tensors[name] = Tensor(name, tuple(int(d) for d in shape), float(scale), int(zp), **kw)
        return name

    # ---------------- inputs of a region ----------------
    def act_input(self, name: str, node) -> str:
        """IR tensor behind a float activation input of ``node`` (a DequantizeLinear, maybe via a view)."""
        name = self.skip_identity(name)
        p = self.m.producer.get(name)
        if p is not None and p.op_type == "DequantizeLinear":
            x = p.input[0]
            if x in self.m.consts:
                raise self.err(node, f"input '{name}' is a constant, expected an activation")
            x = self.skip_identity(x)
            if x not in self.tensors:
                xp = self.m.producer.get(x)
                if xp is None and x in {i.name for i in self.m.graph.input}:
                    s, zp, _ = self.act_qparams(p)
                    self.inputs.append(self.new_tensor(x, self.shape(x), s, zp, is_input=True))
                else:
                    raise self.err(node, f"input '{name}' is dequantized from '{x}', which is not a "
                                         f"QuantizeLinear output")
            t = self.tensors[x]
            s, zp, _ = self.act_qparams(p)
            if abs(s - t.scale) > 1e-9 * t.scale or zp != t.zero_point:
                raise self.err(p, f"dequantizes '{x}' with scale/zero point ({s}, {zp}) different from its "
                                  f"quantization ({t.scale}, {t.zero_point})")
            return x
        view = ops.onnx_view(p.op_type) if p is not None else None
        if view is not None:
            view.view_from_onnx(self, p, self.act_input(p.input[0], p), name)
            return name
        what = f"produced by {p.op_type} '{self.m.node_name(p)}'" if p is not None else "a float graph input"
        raise self.err(node, f"input '{name}' is not quantized ({what}, no DequantizeLinear before it)")

    def const_q(self, name: str, node, what: str):
        """(int values, scale array, zero point array, axis) of a constant through DequantizeLinear."""
        name = self.skip_identity(name)
        p = self.m.producer.get(name)
        if p is None or p.op_type != "DequantizeLinear":
            raise self.err(node, f"{what} '{name}' is not quantized (no DequantizeLinear)")
        scale, zp, axis, uint8 = self.qparams(p)
        x = self.skip_identity(p.input[0])
        if x in self.m.consts:
            raw = self.m.consts[x]
            if not np.issubdtype(raw.dtype, np.integer):
                raise self.err(node, f"{what} '{x}' feeds DequantizeLinear but holds {raw.dtype} values, not "
                                     "integers")
            q = raw.astype(np.int64) - (128 if uint8 else 0)
        else:
            qn = self.m.producer.get(x)
            if qn is None or qn.op_type != "QuantizeLinear" or self.skip_identity(qn.input[0]) not in self.m.consts:
                raise self.err(node, f"{what} '{name}' is not a constant")
            qs, qz, qaxis, _ = self.qparams(qn)
            f = self.m.consts[self.skip_identity(qn.input[0])].astype(np.float64)
            q = intparams.quantize(f, qs, qz, axis=qaxis if qs.size > 1 else None).astype(np.int64)
        return q, scale, zp, axis

    def weights(self, name: str, node, out_axis: int, ndim: int):
        q, scale, zp, axis = self.const_q(name, node, "weight")
        if q.ndim != ndim:
            raise self.err(node, f"weight '{name}' has shape {tuple(q.shape)}; {node.op_type} needs a {ndim}-D weight")
        if np.any(zp != 0):
            raise self.err(node, "weights must be symmetric (zero point 0); quantize with symmetric weights")
        if q.min() < -128 or q.max() > 127:
            raise self.err(node, "weights are not int8")
        n_out = q.shape[out_axis]
        if scale.size == 1:
            scale = np.full(n_out, float(scale.ravel()[0]))
        elif scale.size != n_out or (axis % q.ndim) != out_axis:
            raise self.err(node, f"weight scales must be per tensor or per output channel (axis {out_axis})")
        if np.any(scale <= 0):
            raise self.err(node, "weight scales must be positive")
        return q.astype(np.int8), scale.astype(np.float64)

    def bias(self, name: str | None, node, s_in: float, s_w: np.ndarray) -> np.ndarray:
        n = s_w.size
        if not name:
            return np.zeros(n, dtype=np.int32)
        name = self.skip_identity(name)
        want = s_in * s_w
        if name in self.m.consts:  # float bias
            b = self.m.consts[name].astype(np.float64).ravel()
            return intparams.quantize_bias(b, s_in, s_w)
        q, scale, zp, _ = self.const_q(name, node, "bias")
        q = q.ravel()
        if q.size != n:
            raise self.err(node, f"bias has {q.size} values for {n} output channels")
        scale = np.broadcast_to(scale.ravel(), (n,)) if scale.size in (1, n) else None
        if scale is None or np.any(np.asarray(zp) != 0):
            raise self.err(node, "bias must be quantized per tensor or per channel with zero point 0")
        if np.all(np.abs(scale - want) <= 1e-5 * want):
            return q.astype(np.int32)
        return intparams.quantize_bias(q * scale, s_in, s_w)  # re-express with scale s_in * s_w

    # ---------------- regions ----------------
    def act_range(self, chain) -> tuple[float, float] | None:
        lo, hi = -math.inf, math.inf
        for n in chain:
            if n.op_type == "Relu":
                lo = max(lo, 0.0)
            else:
                a = self.m.attr(n, "min", None)
                b = self.m.attr(n, "max", None)
                if len(n.input) > 1 and n.input[1]:
                    if n.input[1] not in self.m.consts:
                        raise self.err(n, "min is not a constant")
                    a = float(self.m.consts[n.input[1]])
                if len(n.input) > 2 and n.input[2]:
                    if n.input[2] not in self.m.consts:
                        raise self.err(n, "max is not a constant")
                    b = float(self.m.consts[n.input[2]])
                lo = max(lo, -math.inf if a is None else float(a))
                hi = min(hi, math.inf if b is None else float(b))
        if lo == -math.inf and hi == math.inf:
            return None
        return (lo, hi)

    def region(self, f: str, y: str, s_out: float, zp_out: int, qnode) -> None:
        chain = []
        f = self.skip_identity(f)
        n = self.m.producer[f]
        while n.op_type in _ACTS and not self.is_dq(self.skip_identity(n.input[0])):
            src = self.skip_identity(n.input[0])
            if src not in self.m.producer:
                break
            chain.append(n)
            n = self.m.producer[src]
        bias_name = None
        if n.op_type == "Add":
            ins = [self.skip_identity(i) for i in n.input]
            consts = [i for i in ins if i in self.m.consts or (self.is_dq(i) and self._is_const_dq(i))]
            others = [i for i in ins if i not in consts]
            if len(consts) == 1 and len(others) == 1 and others[0] in self.m.producer \
                    and self.m.producer[others[0]].op_type == "MatMul":
                bias_name = consts[0]
                n = self.m.producer[others[0]]
            elif len(consts) == 1 and len(others) == 1 and self.is_dq(others[0]):
                if self.fold_const_add(n, consts[0], others[0], y, s_out, zp_out, self.act_range(reversed(chain))):
                    return
        act = self.act_range(reversed(chain))
        out_shape = self.shape(f, n) if f in self.m.shapes else self.shape(y, qnode)
        kind = ops.onnx_anchor(n.op_type)
        if kind is None:
            raise self.err(n, "cannot be compiled in this position (its output is quantized directly)")
        kind.from_onnx(self, ops.Region(n, y, out_shape, s_out, zp_out, act, chain, qnode, bias_name))

    def fold_const_add(self, n, const_name: str, act_name: str, y: str, s_out: float, zp_out: int, act) -> bool:
        """Add(conv/FC output, per-channel constant) -> Q: the constant joins the producer's int32 bias and the
        producer writes y directly (one rounding instead of two; onnxruntime's QDQ rounds twice, <= 1 LSB)."""
        x = self.skip_identity(self.m.producer[act_name].input[0])
        prod = next((op for op in self.ops if op.outputs == [x]), None)
        if prod is None or not ops.get(prod.kind).folds_const_add or prod.act is not None:
            return False
        if len(self.m.consumers.get(x, [])) != 1 or len(self.m.consumers.get(act_name, [])) != 1:
            return False
        if const_name in self.m.consts:
            b = self.m.consts[const_name].astype(np.float64)
        else:
            q, scale, zp, _ = self.const_q(const_name, n, "constant addend")
            b = (q - zp) * scale
        c_out = prod.bias.size
        if b.size != c_out and b.size != 1:
            raise self.err(n, f"the constant addend has {b.size} values for {c_out} channels")
        xt = self.tensors[prod.inputs[0]]
        extra = intparams.quantize_bias(np.broadcast_to(b.ravel(), (c_out,)), xt.scale, prod.weight_scales)
        prod.bias = np.clip(prod.bias.astype(np.int64) + extra, intparams.INT32_MIN, intparams.INT32_MAX).astype(np.int32)
        shape = self.tensors.pop(x).shape
        self.new_tensor(y, shape, s_out, zp_out)
        prod.outputs = [y]
        prod.act = act
        # onnxruntime runs the two as integer kernels with the int8 tensor between (QLinearAdd with a constant)
        prod.attrs["folded_add"] = n.name or n.output[0]
        return True

    def _is_const_dq(self, name: str) -> bool:
        p = self.m.producer[name]
        x = self.skip_identity(p.input[0])
        if x in self.m.consts:
            return True
        q = self.m.producer.get(x)
        return q is not None and q.op_type == "QuantizeLinear" and self.skip_identity(q.input[0]) in self.m.consts

    def ints(self, node, name, n, default):
        v = self.m.attr(node, name, None)
        return tuple(int(a) for a in v) if v is not None else tuple([default] * n)

    def spatial(self, n, kernel):
        auto_pad = self.m.attr(n, "auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        if auto_pad not in ("NOTSET", "VALID"):
            raise self.err(n, f"auto_pad={auto_pad} is not supported; export with explicit pads")
        strides = self.ints(n, "strides", 2, 1)
        pads = self.ints(n, "pads", 4, 0)  # ONNX: top, left, bottom, right
        dil = self.ints(n, "dilations", 2, 1)
        if dil != (1, 1):
            raise self.err(n, f"dilations {dil} are not supported")
        if any(p < 0 for p in pads) or any(p >= k for p, k in zip(pads, kernel * 2)):
            raise self.err(n, f"pads {pads} must be >= 0 and smaller than the kernel {kernel}")
        return strides, pads

    # ---------------- driver ----------------
    def run(self) -> Graph:
        g = self.m.graph
        graph_inputs = {i.name for i in g.input}
        for node in g.node:
            if node.op_type != "QuantizeLinear":
                continue
            f = self.skip_identity(node.input[0])
            if f in self.m.consts:
                continue  # a constant quantized at export time (weights)
            y = node.output[0]
            s, zp, _ = self.act_qparams(node)
            if f in graph_inputs:
                shape = self.shape(f, node)
                self.inputs.append(self.new_tensor(y, shape, s, zp, is_input=True))
                continue
            if f not in self.m.producer:
                raise self.err(node, f"input '{f}' is neither a graph input nor produced by a node")
            self.region(f, y, s, zp, node)
        out = self.skip_identity(g.output[0].name)
        p = self.m.producer.get(out)
        if p is not None and p.op_type == "DequantizeLinear":
            out = self.skip_identity(p.input[0])
        if out not in self.tensors:
            raise Esc2cError(f"{self.m.path}: the graph output '{g.output[0].name}' is not quantized "
                             f"(it must be the DequantizeLinear of int8 logits)")
        if not self.inputs:
            raise Esc2cError(f"{self.m.path}: the graph input is never quantized (no QuantizeLinear on it)")
        self.tensors[out].is_output = True
        graph = Graph(self.tensors, self.ops, self.inputs[:1], [out], layout="NCHW",
                      metadata=dict(self.m.metadata))
        _dead_code(graph)
        graph.check()
        return graph


def _dead_code(g: Graph) -> None:
    live = set(g.outputs)
    keep = []
    for op in reversed(g.ops):
        if any(o in live for o in op.outputs):
            keep.append(op)
            live.update(op.inputs)
    g.ops = list(reversed(keep))
    g.tensors = {n: t for n, t in g.tensors.items() if n in live or n in g.inputs}


def fold_qdq(m: OnnxModel) -> Graph:
    return _Folder(m).run()

