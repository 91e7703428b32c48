"""``fully_connected``: ONNX Gemm or MatMul (+ a constant Add as its bias).

Fields: inputs [x] (any shape, read as a flat vector of K); weights int8 [C_out, K]; bias int32 [C_out];
per-tensor ``multiplier``/``shift`` (arrays whose values are all equal, ``attrs['per_tensor']``) when the
weight scales are all equal, otherwise per-channel. CMSIS-NN v4.0.0's arm_fully_connected_s8 is per-tensor
only: a per-channel layer runs as a 1x1 convolution (arm_convolve_wrapper_s8) on a 1x1xK input; under the
onnxruntime contract every one does, on the runtime's esc2c_group_conv_s8. After a
flatten of a spatial tensor the weight columns are in H, W, C order (``attrs['hwc_columns']``, set by the
reshape's layout hook).
"""
from __future__ import annotations

import numpy as np

from esc2c.compiler.ir import Graph, Op
from esc2c.compiler.ops import convlike
from esc2c.compiler.ops.base import NO_SCRATCH, OpKind, Region, count, f32
from esc2c.compiler.ops.conv import CONV, TEMPLATES as CONV_TEMPLATES
from esc2c.contract import ONNXRUNTIME, TFLITE

KIND = "fully_connected"
FC = "arm_fully_connected_s8"


def permute_columns_hwc(op: Op, c: int, h: int, w: int) -> None:
    """Weight columns from ONNX's C, H, W order to the H, W, C order of a flattened NHWC tensor (once)."""
    if not op.attrs.get("hwc_columns"):
        op.weights = np.ascontiguousarray(
            op.weights.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(op.weights.shape[0], -1))
        op.attrs["hwc_columns"] = True


class FullyConnected(OpKind):
    kind = KIND
    contracts = (TFLITE, ONNXRUNTIME)
    onnx_anchors = ("Gemm", "MatMul")
    folds_const_add = True

    def from_onnx(self, imp, r: Region) -> None:
        n, bias_name = r.node, r.bias_name
        x = imp.act_input(n.input[0], n)
        xt = imp.tensors[x]
        if len(xt.shape) != 2 or xt.shape[0] != 1:
            raise imp.err(n, f"the activation input must be [1, K] (flatten it first), got {xt.shape}")
        if n.op_type == "Gemm":
            if imp.m.attr(n, "transA", 0) or float(imp.m.attr(n, "alpha", 1.0)) != 1.0 \
                    or float(imp.m.attr(n, "beta", 1.0)) != 1.0:
                raise imp.err(n, "only Gemm with transA=0, alpha=1, beta=1 is supported")
            trans_b = int(imp.m.attr(n, "transB", 0))
            w, s_w = imp.weights(n.input[1], n, 0 if trans_b else 1, 2)
            if not trans_b:
                w = np.ascontiguousarray(w.T)
            bias_name = n.input[2] if len(n.input) > 2 and n.input[2] else None
        else:
            w, s_w = imp.weights(n.input[1], n, 1, 2)
            w = np.ascontiguousarray(w.T)
        if w.shape[1] != xt.shape[1]:
            raise imp.err(n, f"weight has {w.shape[1]} inputs, activation has {xt.shape[1]}")
        b = imp.bias(bias_name, n, xt.scale, s_w)
        imp.new_tensor(r.y, r.out_shape, r.s_out, r.zp_out)
        imp.ops.append(Op(imp.op_name(n), KIND, [x], [r.y], weights=w, weight_scales=s_w, bias=b, act=r.act))

    def takes_activation(self, op: Op, rescales: bool) -> bool:
        return True

    def qparams(self, op: Op, g: Graph) -> None:
        convlike.requant_params(op, g)

    def select_kernel(self, op: Op, g: Graph, options: dict):
        if g.contract == ONNXRUNTIME:  # QGemm / QLinearMatMul: a 1x1 convolution on the runtime's kernel
            return convlike.GROUP_CONV, dict(NO_SCRATCH)
        return (FC if op.attrs.get("per_tensor") else CONV), dict(NO_SCRATCH)

    def macs(self, op: Op, g: Graph) -> int:
        return int(op.weights.size)

    def template(self, op: Op) -> str:
        return "ops/fully_connected.c.j2" if op.kernel == FC else CONV_TEMPLATES[op.kernel]

    def c_context(self, op: Op, g: Graph, L: dict, array) -> None:
        convlike.weight_arrays(op, L, array)
        L["in_dims"] = (1, 1, op.weights.shape[1])
        if op.kernel == FC:
            L["mult_value"], L["shift_value"] = int(op.multiplier[0]), int(op.shift[0])
        else:  # a 1x1 convolution on a 1x1xK input
            L.update(kernel_hw=(1, 1), stride=(1, 1), pad=(0, 0), group=1)
            convlike.requant_arrays(op, L, array)

    def params_ready(self, op: Op) -> bool:
        return convlike.params_ready(op)

    def lower_onnx(self, op: Op, g: Graph, B) -> None:
        x = op.inputs[0]
        xt, yt = g.tensors[x], g.tensors[op.output]
        k = op.weights.shape[1]
        flat = B.node("Reshape", [x, B.const([1, k], np.int64, "shape")])
        acc = B.node("MatMulInteger", [flat, B.const(op.weights.T.copy(), np.int8, "w"),
                                       B.const(xt.zero_point, np.int8, "xzp")])
        acc = B.node("Add", [B.i64(acc), B.const(op.bias.astype(np.int64), np.int64, "bias")])
        mult, shift = (op.multiplier[:1], op.shift[:1]) if op.kernel == FC else (op.multiplier, op.shift)
        y = B.finish_s8(B.requant(acc, mult, shift), op, yt.zero_point, B.name("fc"))
        B.node("Reshape", [y, B.const(list(yt.shape), np.int64, "shape")], op.output)

    def lower_tflite(self, op: Op, g: Graph, w) -> None:
        _write_tflite_as_conv(op, g, w, np.asarray(op.weight_scales, np.float64))

    def cost_counts(self, op: Op, g: Graph, f: dict) -> None:
        k, cout = int(op.weights.shape[1]), int(op.weights.shape[0])
        if op.kernel == FC:
            count(f, "fc.mac", k * cout)
            count(f, "fc.out", cout)
        else:
            convlike.conv_counts(f, op.kernel, k, cout, 1, 1, 1, [1], 0)


def _reshape(w, name: str, src: int, shape, qt, dest: int | None = None) -> int:
    fb = w.fb
    out = dest if dest is not None else w.tensor(name, shape, fb.TensorType.INT8, qt)
    opt = fb.ReshapeOptionsT()
    opt.newShape = [int(d) for d in shape]
    w.operator("RESHAPE", [src, w.const(f"{name}/shape", np.array(shape, np.int32), fb.TensorType.INT32)], [out],
               opt, "ReshapeOptions")
    return out


def _write_tflite_as_conv(op: Op, g: Graph, w, s_w: np.ndarray) -> None:
    """The layer as a 1x1 CONV_2D on the 1x1xK input, between two RESHAPEs (per-tensor scales are written
    per channel, all equal). TFLite's FULLY_CONNECTED is not one kernel: TensorFlow 2.21's reference one
    rounds differently from TFLite Micro's (1 LSB apart on a logit, per-channel and per-tensor layers alike),
    while both convolutions follow the contract's double rounding, as the C's CMSIS-NN kernels do."""
    fb = w.fb
    x, y = g.tensors[op.inputs[0]], g.tensors[op.output]
    k, cout = int(op.weights.shape[1]), int(op.weights.shape[0])
    w.check_requant(op, x.scale, s_w, y.scale, op.multiplier, op.shift)
    xi = _reshape(w, f"{op.name}/as_image", w.activation(op.inputs[0]), (1, 1, 1, k), w.quant(x.scale, x.zero_point))
    wi = w.const(f"{op.name}/weights", np.asarray(op.weights, np.int8).reshape(cout, 1, 1, k), fb.TensorType.INT8,
                 w.quant(s_w, np.zeros(s_w.size, np.int64), 0))
    bi = w.const(f"{op.name}/bias", np.asarray(op.bias, np.int32), fb.TensorType.INT32,
                 w.quant(f32(x.scale).astype(np.float64) * f32(s_w), np.zeros(s_w.size, np.int64), 0))
    yi = w.tensor(f"{op.name}/conv", (1, 1, 1, cout), fb.TensorType.INT8, w.quant(y.scale, y.zero_point))
    opt = fb.Conv2DOptionsT()
    opt.padding, opt.strideH, opt.strideW = fb.Padding.VALID, 1, 1
    opt.dilationHFactor = opt.dilationWFactor = 1
    opt.fusedActivationFunction = w.act(op)
    w.operator("CONV_2D", [xi, wi, bi], [yi], opt, "Conv2DOptions")
    _reshape(w, f"{op.name}/flat", yi, tuple(y.shape), None, dest=w.activation(op.output))


OP = FullyConnected()
