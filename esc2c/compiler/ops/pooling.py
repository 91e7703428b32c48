"""What max_pool and avg_pool (and conv_pool's pool) share: the ONNX pooling attributes, the .tflite
pooling operator and the cost-model counts of a pooling call. A helper module, not an op kind."""
from __future__ import annotations

import numpy as np

from esc2c.compiler.ir import Graph, Op
from esc2c.compiler.ops.base import count
from esc2c.errors import Esc2cError


def onnx_pool(imp, n) -> tuple[str, dict]:
    """(IR input tensor, attrs kernel/stride/pads) of an ONNX MaxPool, AveragePool or GlobalAveragePool."""
    x = imp.act_input(n.input[0], n)
    xt = imp.tensors[x]
    if len(xt.shape) != 4:
        raise imp.err(n, f"pooling needs an NCHW tensor, got shape {xt.shape}")
    if n.op_type == "GlobalAveragePool":
        kernel, strides, pads = tuple(xt.shape[2:]), (1, 1), (0, 0, 0, 0)
    else:
        kernel = imp.ints(n, "kernel_shape", 2, 1)
        strides, pads = imp.spatial(n, kernel)
    return x, {"kernel": kernel, "stride": strides, "pads": pads}


def write_tflite(op: Op, g: Graph, w, code: str, pad_with: str | None, why_not: str = "") -> None:
    """MAX_POOL_2D / AVERAGE_POOL_2D: input and output share their quantization."""
    fb = w.fb
    x, y = g.tensors[op.inputs[0]], g.tensors[op.output]
    if not (np.float32(x.scale) == np.float32(y.scale) and x.zero_point == y.zero_point):
        raise Esc2cError(f"layer '{op.name}': {op.kind} input and output quantization differ")
    xi, padding = w.padded_input(op, pad_with, why_not)
    opt = fb.Pool2DOptionsT()
    opt.padding = getattr(fb.Padding, padding)
    opt.strideH, opt.strideW = (int(v) for v in op.attrs["stride"])
    opt.filterHeight, opt.filterWidth = (int(v) for v in op.attrs["kernel"])
    opt.fusedActivationFunction = w.act(op)
    w.operator(code, [xi], [w.activation(op.output)], opt, "Pool2DOptions")


def pool_counts(f: dict, key: str, out_values: int, window: int, calls: int) -> None:
    """Cost-model counts of a pool: ``key`` "pool" (max) or "avg"."""
    count(f, f"{key}.win", out_values * window)
    count(f, f"{key}.out", out_values)
    count(f, f"{key}.call", calls)
