"""``conv_pool``: a ``conv`` (group 1) and the ``max_pool`` / ``avg_pool`` (equal qparams) reading it, run
band-wise so the conv output is never stored (made by passes/fuse_conv_pool.py; ``emit(fuse="none")`` keeps
the two ops; ``fuse_conv_pool.unfuse`` gives them back to the integer ONNX and .tflite writers).

Fields: the conv's fields, kernel (its C function) and attrs; inputs [conv input], outputs [pool output];
attrs ``pool`` (name, kind, fn, kernel, stride, pads, act_min/act_max, macs, scratch), ``mid`` (name and
shape of the conv output, which is not a tensor of the graph; its qparams are the output's), ``conv``
(name, macs, scratch), ``band_rows``, ``band_offset`` (band buffer inside the op's scratch); macs = conv +
pool. One layer for the per-layer hook and verify ("<conv>+<pool>", the pooled output).

For every pooled output row r the pool window covers conv output rows [lo, hi] (:func:`windows`); the rows
not already in the band are computed anew (:func:`schedule`) from the input rows they read (:func:`in_rows`).

On the small-tap kernel (ops/conv_small.py) a max pool whose windows tile the conv output is done in the
kernel's epilogue, one call for the layer (attrs ``pool_in_kernel``, no band): each pooled row is written
after the input rows its windows read, the order the band-wise schedule has, so the memory-plan rule holds.
"""
from __future__ import annotations

import numpy as np

from esc2c.compiler.ir import Graph, Op
from esc2c.compiler.ops import avg_pool, conv, conv_fast, conv_small, convlike, max_pool, pooling
from esc2c.compiler.ops.base import OpKind, hwc
from esc2c.contract import ONNXRUNTIME, TFLITE

KIND = "conv_pool"
CONV_KERNELS = (conv.CONV, *conv_fast.KERNELS, conv_small.SMALL_CONV)
POOL_KERNELS = (*max_pool.KERNELS, avg_pool.AVG_POOL)
POOL_COST_KEYS = {**max_pool.COST_KEYS, avg_pool.AVG_POOL: avg_pool.COST_KEY}


def windows(op_or_attrs, conv_h: int, pooled_h: int) -> list[tuple[int, int, int]]:
    """(w0, lo, hi) per pooled row: the window's first conv row (may be negative: padding) and the conv
    rows [lo, hi] it covers inside the conv output."""
    p = op_or_attrs
    kh, sh, pt = p["kernel"][0], p["stride"][0], p["pads"][0]
    res = []
    for r in range(pooled_h):
        w0 = r * sh - pt
        res.append((w0, max(w0, 0), min(w0 + kh, conv_h) - 1))
    return res


def schedule(windows_: list[tuple[int, int, int]]) -> list[tuple[int, int]]:
    """Per pooled row, the conv rows [first, last] computed anew (first > last: none), the rest being
    moved from the previous band."""
    out, held_hi = [], -1
    for _, lo, hi in windows_:
        first = max(lo, held_hi + 1)
        out.append((first, hi))
        held_hi = max(held_hi, hi)
    return out


def in_rows(conv_attrs, in_h: int, first: int, last: int) -> tuple[int, int]:
    """Input rows [start, end) conv output rows first..last read (clipped to the input)."""
    kh, sh, pt = conv_attrs["kernel"][0], conv_attrs["stride"][0], conv_attrs["pads"][0]
    return max(first * sh - pt, 0), min(last * sh - pt + kh, in_h)


def overlap_gap(op: Op, g: Graph) -> int:
    """Memory plan: smallest g such that the pooled output may start g bytes before the conv input. Pooled
    row r is written once the band for row r is complete; afterwards only input rows from the first row the
    next bands read are needed, so rows 0..r of the output must end at or before that row's first byte."""
    x, y = g.tensors[op.inputs[0]], g.tensors[op.output]
    _, in_h, in_w, c_in = x.shape
    _, ph, pw, c = y.shape
    sched = schedule(windows(op.attrs["pool"], op.attrs["mid"]["shape"][1], ph))
    starts = [in_rows(op.attrs, in_h, f, l)[0] if f <= l else in_h for f, l in sched]
    later = np.minimum.accumulate(np.array(starts[::-1] + [in_h]))[::-1]  # first input row read by rows >= r
    gaps = [(r + 1) * pw * c - int(later[r + 1]) * in_w * c_in for r in range(ph - 1)]
    return max(gaps, default=0)


def pooled_clamp(conv_act: tuple[int, int], pool_act: tuple[int, int]) -> tuple[int, int]:
    """The conv's clamp then the pool's, as one clamp: the composition is monotone, so it is the clamp to
    the images of -128 and 127 (a single value when the two ranges do not meet)."""
    def both(v: int) -> int:
        return min(max(min(max(v, conv_act[0]), conv_act[1]), pool_act[0]), pool_act[1])
    return both(-128), both(127)


def small_context(op: Op, g: Graph) -> dict:
    """templates/ops/conv_small.c.j2's fields for a conv + max pool in the small-tap kernel's epilogue."""
    kh, kw = op.attrs["kernel"]
    p = op.attrs["pool"]
    pool = tuple(p["kernel"])
    return {"fn": conv_small.function(g.tensors[op.inputs[0]].shape[3], kh, kw, pool), "pool": pool,
            "act": pooled_clamp((op.act_min, op.act_max), (p["act_min"], p["act_max"]))}


def layer_context(op: Op, g: Graph) -> dict:
    """What templates/ops/conv_pool.c.j2 needs beside the common layer fields."""
    a, p = op.attrs, op.attrs["pool"]
    x, y = g.tensors[op.inputs[0]], g.tensors[op.output]
    mid = a["mid"]["shape"]
    base = a["scratch_offset"]
    conv_scratch = a["conv"]["scratch"]
    return {
        "in_h": x.shape[1], "in_w": x.shape[2], "in_c": x.shape[3],
        "mid_h": mid[1], "mid_w": mid[2], "mid_c": mid[3],
        "fast": op.kernel in conv_fast.KERNELS, "avg": p["fn"] == avg_pool.AVG_POOL,
        "pool_2x2": p["fn"] == max_pool.MAX_POOL_2X2,
        "small": (conv_small.function(x.shape[3], *a["kernel"]) if op.kernel == conv_small.SMALL_CONV else None),
        "pool_fn": p["fn"], "pool_kernel": p["kernel"], "pool_stride": p["stride"], "pool_pad": p["pads"][:2],
        "pool_act_min": p["act_min"], "pool_act_max": p["act_max"],
        "conv_scratch": conv_scratch, "pool_scratch": p["scratch"],
        "conv_scratch_ptr": f"&esc2c_arena[{base}]" if conv_scratch else "NULL",
        "pool_scratch_ptr": f"&esc2c_arena[{base}]" if p["scratch"] else "NULL",
        "band_off": base + a["band_offset"], "band_rows": a["band_rows"],
        "out_h": y.shape[1], "out_w": y.shape[2],
    }


class ConvPool(OpKind):
    kind = KIND
    contracts = (TFLITE, ONNXRUNTIME)

    def raster_ordered(self, op: Op, g: Graph) -> bool:
        return True  # band by band: rows of output after the input rows they need

    def overlap_gap(self, op: Op, g: Graph) -> int:
        return overlap_gap(op, g)

    def hidden_tensor_bytes(self, op: Op) -> int:
        return int(np.prod(op.attrs["mid"]["shape"]))

    def template(self, op: Op) -> str:
        return "ops/conv_small.c.j2" if op.attrs.get("pool_in_kernel") else super().template(op)

    def c_context(self, op: Op, g: Graph, L: dict, array) -> None:
        convlike.weight_arrays(op, L, array)
        convlike.requant_arrays(op, L, array)
        if op.attrs.get("pool_in_kernel"):
            L["small"] = small_context(op, g)
        else:
            L["cp"] = layer_context(op, g)

    def params_ready(self, op: Op) -> bool:
        return convlike.params_ready(op)

    def cost_counts(self, op: Op, g: Graph, f: dict) -> None:
        """The conv over the rows each band computes (one call per band), the pool once per pooled row."""
        kh, kw = op.attrs["kernel"]
        cin = hwc(g.tensors[op.inputs[0]].shape)[2]
        pad_w = max(op.attrs["pads"][1], op.attrs["pads"][3])
        mid_h, mid_w, _ = hwc(op.attrs["mid"]["shape"])
        p = op.attrs["pool"]
        ph, pw, pc = hwc(g.tensors[op.output].shape)
        if op.attrs.get("pool_in_kernel"):  # one call; the pool is in the epilogue
            convlike.small_counts(f, cin, pc, kh, kw, ph * pw, tuple(p["kernel"]), tuple(op.attrs["stride"]))
            return
        rows = [hi - lo + 1 for lo, hi in schedule(windows(p, mid_h, ph)) if hi >= lo]
        convlike.conv_counts(f, op.kernel, cin, int(op.weights.shape[0]), kh, kw, mid_w, rows, pad_w)
        pooling.pool_counts(f, POOL_COST_KEYS[p["fn"]], ph * pw * pc, p["kernel"][0] * p["kernel"][1], ph)


OP = ConvPool()
