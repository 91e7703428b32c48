"""The project's convolution kernel for few taps per output (runtime/src/esc2c_conv_s8_small.c): where it
applies, its scratch size and the copy of it a layer calls. A helper of the conv and conv_pool op kinds
(ops/conv.py, ops/conv_pool.py), not an op kind itself.

First layers (one to four input channels) have 9-36 taps per output: the fast kernel (ops/conv_fast.py) spends
most of their time outside the multiply-accumulates, in im2col and requantization. This kernel keeps each
channel's weights in registers while the columns of a window pass by and, fused with a max pool
(conv_pool), requantizes once per pooled value: requantization and clamping are monotone, so the largest
accumulator gives the pooled result. It reads the IR's int8 OHWI weights (widened at run time into its
scratch), so the layer costs no extra flash.
"""
from __future__ import annotations

from esc2c.compiler.ir import Op

SMALL_CONV = "esc2c_conv_small_s8"
MAX_WORDS = 18   # ESC2C_CONV_SMALL_MAX_WORDS
MAX_OUT = 64     # ESC2C_CONV_SMALL_MAX_OUT


def words(c_in: int, kh: int, kw: int) -> int:
    """ESC2C_CONV_SMALL_WORDS: 2-tap words per channel, each kernel row's taps padded to a multiple of 4."""
    return kh * ((c_in * kw + 3) // 4) * 2


def buffer_size(c_in: int, kh: int, kw: int, c_out: int, pool: tuple[int, int] = (1, 1), out_w: int = 0) -> int:
    """ESC2C_CONV_SMALL_BUFFER_SIZE: widened weights, one column per window pixel, a pooled output row when
    pooling, +3 bytes for alignment (the memory plan may place the scratch at any byte)."""
    n_pool = pool[0] * pool[1]
    return 4 * words(c_in, kh, kw) * (c_out + n_pool) + (out_w * c_out if n_pool > 1 else 0) + 3


MAX_IN = 4       # input channels of the layers the compiler gives it (first layers)


def applies(op: Op, c_in: int) -> bool:
    """A plain convolution (one group, no dilation) on at most MAX_IN input channels, with at most MAX_WORDS
    words per channel and MAX_OUT output channels: the first layer of a log-mel model, and thin layers that
    pruning leaves (4 channels, 3x3)."""
    kh, kw = op.attrs["kernel"]
    return (op.attrs.get("group", 1) == 1 and c_in <= MAX_IN and tuple(op.attrs.get("dilation", (1, 1))) == (1, 1)
            and words(c_in, kh, kw) <= MAX_WORDS and int(op.weights.shape[0]) <= MAX_OUT)


def pools_in_epilogue(conv: Op, pool: Op) -> bool:
    """Whether the kernel runs ``conv`` and does ``pool`` in its epilogue: a max pool, no padding, stride
    equal to the window (every window inside the conv output; the conv rows and columns past the last window
    are not computed)."""
    a = pool.attrs
    return (conv.kernel == SMALL_CONV and pool.kind == "max_pool" and tuple(a["pads"]) == (0, 0, 0, 0)
            and tuple(a["stride"]) == tuple(a["kernel"]))


P4_WORDS = (6, 12, 18)  # the 2x2-window copies (esc2c_conv_small_s8_w<N>_p4)


def function(c_in: int, kh: int, kw: int, pool: tuple[int, int] = (1, 1)) -> str:
    """The copy of the kernel a layer calls: esc2c_conv_small_s8_w<words>_p4 for a 2x2 window at 6, 12 or 18
    words per channel, else esc2c_conv_small_s8_any."""
    nw = words(c_in, kh, kw)
    return f"{SMALL_CONV}_w{nw}_p4" if pool[0] * pool[1] == 4 and nw in P4_WORDS else f"{SMALL_CONV}_any"
