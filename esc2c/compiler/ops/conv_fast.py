"""The project's fast convolution kernel (runtime/src/esc2c_conv_s8_fast.c): where it applies, its scratch
size and its weight layout, written at emit time. A helper of the conv and conv_pool op kinds (ops/conv.py,
ops/conv_pool.py), not an op kind itself.

The kernel reads weights pre-widened to int16 in the order its inner loop consumes them (the layout is
documented in runtime/include/esc2c_conv_fast.h): taps in [KH][KW][C_in] order, each kernel row's KW*C_in
taps padded with zeros to a multiple of 4 (Kp = KH * that), output channels in pairs, and within a pair, word j of both channels side by side, each word holding taps
(4q + s, 4q + s + 2) for q = j // 2, s = j % 2. The flash cost is 2 bytes per weight instead of 1.

Its int8-weight entry point (esc2c_conv_fast_s8_w8) reads the same values as int8, word j of a pair holding
(channel 0 tap t, channel 1 tap t, channel 0 tap t + 2, channel 1 tap t + 2): two SXTB16 per step widen it,
and two steps share one LDRD of weight words: 19 instructions per 24 MACs instead of 16 (10 per 12 in the
chunked loop of columns longer than DOT_LONG words), for half the flash. The fit_flash pass switches layers to it when
the int16 weights do not fit the board (``narrow_saving``: the bytes it saves).
"""
from __future__ import annotations

import numpy as np

from esc2c.compiler.ir import Graph, Op

FAST_CONV = "esc2c_conv_fast_s8"
FAST_CONV_W8 = "esc2c_conv_fast_s8_w8"
KERNELS = (FAST_CONV, FAST_CONV_W8)
PIXELS = 3  # ESC2C_CONV_FAST_PIXELS: output pixels per step
DOT_LONG = 288  # ESC2C_DOT_LONG: column words per channel that the straight dot loop covers; longer ones are chunked


def padded_taps(c_in: int, kh: int, kw: int) -> int:
    return kh * ((c_in * kw + 3) // 4 * 4)


def buffer_size(c_in: int, kh: int, kw: int) -> int:
    """ESC2C_CONV_FAST_BUFFER_SIZE: 3 int16 columns of Kp taps (+1 linear column when C_in % 4 != 0), +3
    bytes for aligning them (the memory plan may place the scratch at any byte)."""
    return 2 * padded_taps(c_in, kh, kw) * (PIXELS + (1 if c_in % 4 else 0)) + 3


def applies(op: Op) -> bool:
    """A convolution op (ops/conv.py) runs on the kernel when plain: one group, no dilation (grouped
    convolutions keep their kernel; depthwise and fully connected layers are other kinds)."""
    return op.attrs.get("group", 1) == 1 and tuple(op.attrs.get("dilation", (1, 1))) == (1, 1)


def pack_weights(w: np.ndarray, w8: bool = False) -> np.ndarray:
    """int8 weights [C_out, KH, KW, C_in] -> the kernel's int16 layout (flat), or with ``w8`` the int8 layout
    of esc2c_conv_fast_s8_w8 (the same values, each word's channels and taps interleaved)."""
    w = np.asarray(w)
    if w.ndim != 4:
        raise ValueError(f"conv weights must be [C_out, KH, KW, C_in], got shape {w.shape}")
    c_out, kh, kw, c_in = w.shape
    row = kw * c_in
    kp = padded_taps(c_in, kh, kw)
    pairs = (c_out + 1) // 2
    full = np.zeros((2 * pairs, kh, kp // kh), np.int8 if w8 else np.int16)
    full[:c_out, :, :row] = w.reshape(c_out, kh, row)
    full = full.reshape(2 * pairs, kp)
    # [pair, channel, quad, hi/lo tap (+2), slot s] -> [pair, quad, slot, channel, lo/hi] (int16) or
    # [pair, quad, slot, lo/hi, channel] (int8: SXTB16 takes bytes 0, 2 and, rotated, 1, 3)
    order = (0, 2, 4, 3, 1) if w8 else (0, 2, 4, 1, 3)
    return np.ascontiguousarray(full.reshape(pairs, 2, kp // 4, 2, 2).transpose(order)).ravel()


def packed_bytes(op: Op, w8: bool = False) -> int:
    """Flash of the op's packed weights: int16 values, or int8 ones with ``w8``."""
    kh, kw = op.attrs["kernel"]
    c_out, c_in = op.weights.shape[0], op.weights.shape[3]
    return (1 if w8 else 2) * ((c_out + 1) // 2) * 2 * padded_taps(c_in, kh, kw)


def extra_bytes(op: Op) -> int:
    """Flash the op's packed weights take beyond its plain int8 ones (0 unless it runs the fast kernel): the
    int16 widening and the padding, or the padding alone for the int8-weight entry point."""
    if op.kernel not in KERNELS:
        return 0
    return packed_bytes(op, op.kernel == FAST_CONV_W8) - op.weights.size


def narrow_saving(op: Op) -> int:
    """Flash saved by switching the op from int16 to int8 packed weights (0 unless it reads int16 ones)."""
    return packed_bytes(op) - packed_bytes(op, True) if op.kernel == FAST_CONV else 0


def flash_bytes_delta(g: Graph) -> int:
    """Extra flash of the packed weights over plain int8 ones, for the ops that run the fast kernel."""
    return sum(extra_bytes(op) for op in g.ops)
