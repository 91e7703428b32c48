"""Pick the C function for every op and size its scratch buffer.

Scratch sizes reproduce the ``*_get_buffer_size`` functions of CMSIS-NN v4.0.0 for both code paths the
project builds: Cortex-M7 (ARM_MATH_DSP) and the host (plain C); the planner reserves the larger. The
emitted code also asks the linked CMSIS-NN at run time (first call) and refuses to run if a kernel
wants more than was planned, which covers other CMSIS-NN versions.
"""
from __future__ import annotations

from esc2c.compiler.ir import Graph, Op
from esc2c.compiler.passes import conv_fast
from esc2c.compiler.passes.conv_fast import DEFAULT_KERNELS, FAST_CONV, KERNEL_CHOICES

CONV = "arm_convolve_wrapper_s8"
DW_CONV = "arm_depthwise_conv_wrapper_s8"
FC = "arm_fully_connected_s8"
MAX_POOL = "arm_max_pool_s8"
AVG_POOL = "arm_avgpool_s8"
AVG_POOL_RESCALE = "esc2c_avgpool_rescale_s8"
ADD = "esc2c_add_s8"
GROUP_CONV = "esc2c_group_conv_s8"
REQUANT = "esc2c_requantize_s8"
RUNTIME_KERNELS = (AVG_POOL_RESCALE, ADD, REQUANT, GROUP_CONV)
IN_PLACE = (ADD, REQUANT)  # elementwise: the output may share bytes with an input that dies here


def _conv_s8_buffer(c_in: int, kh: int, kw: int) -> int:
    """arm_convolve_s8_get_buffer_size, non-MVE (DSP and host alike): two int16 im2col columns.

    v4.0.0 uses rhs_cols = C_in * KH * KW; later upstream releases round rhs_cols up to a multiple of 4, so
    the larger of the two is reserved and the project also builds against a current upstream checkout."""
    rhs_cols = c_in * kw * kh
    return max(2 * rhs_cols * 2, 2 * ((rhs_cols + 3) // 4 * 4) * 2)


def conv_wrapper_buffer(in_shape, out_shape, kernel, stride, pads) -> dict[str, int]:
    """arm_convolve_wrapper_s8_get_buffer_size (v4.0.0) for the DSP and host paths."""
    _, ih, _, c_in = in_shape
    _, _, ow, _ = out_shape
    kh, kw = kernel
    pad_h, pad_w = pads[0], pads[1]  # CMSIS-NN takes the leading pads; trailing ones follow from shapes
    if pad_w == 0 and pad_h == 0 and kh == 1 and kw == 1:
        size = 0  # arm_convolve_1x1_s8_fast / arm_convolve_1x1_s8
    elif ih == 1 and ow % 4 == 0 and kh == 1:
        size = _conv_s8_buffer(c_in, kh, kw)  # arm_convolve_1_x_n_s8
    else:
        size = _conv_s8_buffer(c_in, kh, kw)
    return {"dsp": size, "host": size}


def dw_wrapper_buffer(in_shape, out_shape, kernel) -> dict[str, int]:
    """arm_depthwise_conv_wrapper_s8_get_buffer_size (v4.0.0)."""
    c_in, c_out = in_shape[3], out_shape[3]
    kh, kw = kernel
    dsp = c_in * kw * kh * 2 if c_in == c_out else 0  # arm_depthwise_conv_s8_opt_get_buffer_size
    return {"dsp": dsp, "host": 0}


def avgpool_buffer(c: int) -> dict[str, int]:
    return {"dsp": 4 * c, "host": 0}


def _macs(op: Op, g: Graph) -> int:
    x, y = g.tensors[op.inputs[0]], g.tensors[op.output]
    if op.kind == "conv":
        kh, kw = op.attrs["kernel"]
        return y.size * kh * kw * (x.shape[3] // op.attrs.get("group", 1))
    if op.kind == "depthwise_conv":
        kh, kw = op.attrs["kernel"]
        return y.size * kh * kw
    if op.kind == "fully_connected":
        return int(op.weights.size)
    if op.kind in ("max_pool", "avg_pool"):
        kh, kw = op.attrs["kernel"]
        return y.size * kh * kw
    if op.kind in ("add", "requantize"):
        return y.size
    return 0


def kernel_select(g: Graph, kernels: str = DEFAULT_KERNELS) -> Graph:
    """``kernels``: "fast" runs plain convolutions on the project's kernel (esc2c_conv_fast_s8, conv_fast.py),
    "cmsis" keeps CMSIS-NN's arm_convolve_wrapper_s8 for them (the reference path)."""
    if kernels not in KERNEL_CHOICES:
        raise ValueError(f"kernels must be one of {KERNEL_CHOICES}, got {kernels!r}")
    for op in g.ops:
        x, y = g.tensors[op.inputs[0]], g.tensors[op.output]
        sizes = {"dsp": 0, "host": 0}
        if op.kind == "conv" and op.attrs.get("group", 1) > 1:
            op.kernel = GROUP_CONV  # CMSIS-NN v4.0.0 has no grouped convolution
        elif op.kind == "conv" and kernels == "fast" and conv_fast.applies(op):
            op.kernel = FAST_CONV
            kh, kw = op.attrs["kernel"]
            size = conv_fast.buffer_size(x.shape[3], kh, kw)
            sizes = {"dsp": size, "host": size}
        elif op.kind == "conv":
            op.kernel = CONV
            sizes = conv_wrapper_buffer(x.shape, y.shape, op.attrs["kernel"], op.attrs["stride"], op.attrs["pads"])
        elif op.kind == "depthwise_conv":
            op.kernel = DW_CONV
            sizes = dw_wrapper_buffer(x.shape, y.shape, op.attrs["kernel"])
        elif op.kind == "fully_connected":
            # the v4.0.0 FC is per-tensor only: per-channel FC runs as a 1x1 convolution on a 1x1xK input
            op.kernel = FC if op.attrs.get("per_tensor") else CONV
        elif op.kind == "max_pool":
            op.kernel = MAX_POOL
        elif op.kind == "avg_pool":
            if op.attrs.get("rescale"):
                op.kernel = AVG_POOL_RESCALE
            else:
                op.kernel = AVG_POOL
                sizes = avgpool_buffer(x.shape[3])
        elif op.kind == "add":
            op.kernel = ADD
        elif op.kind == "requantize":
            op.kernel = REQUANT
        elif op.kind == "reshape":
            op.kernel = None
        else:
            raise ValueError(f"no kernel for op kind {op.kind} ({op.name})")
        op.attrs["scratch_by_path"] = sizes
        op.scratch = max(sizes.values())
        op.macs = _macs(op, g)
    return g
