"""Conv + pool fusion: a convolution followed by a max pool (or an average pool with equal input and output
quantization, CMSIS-NN's arm_avgpool_s8) runs band-wise, so the convolution's full output is never stored.

For every pooled output row r the pool window covers conv output rows [lo, hi] (clipped to the conv
output). Those rows are computed by the same convolution kernel as unfused (arm_convolve_wrapper_s8 or the
project's fast kernel) on the input rows they need -- the input pointer moved to the first row, the input
height cut to the rows read, the top padding what is left of the conv's own -- into a small band buffer,
and the pool kernel reduces the band to pooled row r (its top padding likewise adjusted). Conv rows shared
by consecutive windows (pool kernel taller than its stride) are moved to the band's front, not recomputed;
conv rows no window reads are not computed. Every conv output row, and every pooled row, is computed by
the same integer arithmetic as in the unfused graph, so results are bit-identical. On the small-tap kernel
(ops/conv_small.py) a max pool whose windows tile the conv output runs in the kernel's epilogue instead, one
call for the layer.

IR: the two ops become one op of kind ``conv_pool`` (see ir.py): the conv's fields (weights, bias,
multiplier/shift, act_min/act_max, kernel = the conv's C function, attrs kernel/stride/pads/...), input the
conv's input, output the pool's output; ``attrs['pool']`` the pool (name, kind, C function, kernel, stride,
pads, clamp), ``attrs['mid']`` the conv output that is no longer a tensor (name, shape; its quantization is
the pool output's), ``attrs['band_rows']`` and ``attrs['band_offset']`` (the band's byte offset inside the
op's scratch; the first bytes hold the larger of the conv's and the pool's own scratch). :func:`unfuse`
gives back the two-op graph, for the back ends that describe the computation op by op (integer ONNX,
.tflite). The op kind itself (band geometry, memory-plan rule, C template context, cost counts) is
esc2c/compiler/ops/conv_pool.py.
"""
from __future__ import annotations

import copy

from esc2c.compiler.ir import Graph, Op, Tensor
from esc2c.compiler.ops import conv_small
from esc2c.compiler.ops.conv_pool import CONV_KERNELS, KIND, POOL_KERNELS, in_rows, schedule, windows

MODES = ("all", "none")  # "auto" (CompileOptions.fuse) is decided by run_passes from two memory plans


def _align4(n: int) -> int:
    return (n + 3) // 4 * 4


def _fusable(g: Graph, conv: Op) -> Op | None:
    if conv.kind != "conv" or conv.kernel not in CONV_KERNELS or conv.attrs.get("group", 1) != 1:
        return None
    if tuple(conv.attrs.get("dilation", (1, 1))) != (1, 1):
        return None
    mid = g.tensors[conv.output]
    if len(mid.shape) != 4 or mid.is_output or mid.name in g.outputs:
        return None
    users = g.consumers(mid.name)
    if len(users) != 1 or users[0].kind not in ("max_pool", "avg_pool") or users[0].kernel not in POOL_KERNELS:
        return None
    pool = users[0]
    out = g.tensors[pool.output]
    if (mid.scale, mid.zero_point) != (out.scale, out.zero_point):  # the band holds conv output in out's qparams
        return None
    x = g.tensors[conv.inputs[0]]
    wins = windows(pool.attrs, mid.shape[1], out.shape[1])
    if any(hi < lo for _, lo, hi in wins):
        return None
    if max(hi - lo + 1 for _, lo, hi in wins) >= mid.shape[1]:  # a window spans every conv row: nothing saved
        return None
    for first, last in schedule(wins):
        if first <= last:
            s, e = in_rows(conv.attrs, x.shape[1], first, last)
            if e <= s:  # conv rows wholly in padding: not a case the band call can express
                return None
    return pool


def _fuse_small(g: Graph, conv: Op, pool: Op) -> Op:
    """The pool in the small-tap kernel's epilogue: one call, no band; scratch the kernel's own."""
    out = g.tensors[pool.output]
    kh, kw = conv.attrs["kernel"]
    size = conv_small.buffer_size(g.tensors[conv.inputs[0]].shape[3], kh, kw, out.shape[3],
                                  tuple(pool.attrs["kernel"]), out.shape[2])
    op = _fuse(g, conv, pool)
    op.attrs.update(pool_in_kernel=True, band_rows=0, band_offset=0, scratch_by_path={"dsp": size, "host": size})
    op.scratch = size
    return op


def _fuse(g: Graph, conv: Op, pool: Op) -> Op:
    mid, out = g.tensors[conv.output], g.tensors[pool.output]
    wins = windows(pool.attrs, mid.shape[1], out.shape[1])
    band_rows = max(hi - lo + 1 for _, lo, hi in wins)
    row_bytes = mid.shape[2] * mid.shape[3]
    conv_paths = conv.attrs.get("scratch_by_path", {"dsp": conv.scratch, "host": conv.scratch})
    pool_paths = pool.attrs.get("scratch_by_path", {"dsp": pool.scratch, "host": pool.scratch})
    head = {k: _align4(max(conv_paths.get(k, 0), pool_paths.get(k, 0))) for k in conv_paths}
    band_offset = max(head.values())
    attrs = {k: v for k, v in conv.attrs.items() if k != "scratch_by_path"}
    attrs.update({
        "pool": {"name": pool.name, "kind": pool.kind, "fn": pool.kernel, "kernel": tuple(pool.attrs["kernel"]),
                 "stride": tuple(pool.attrs["stride"]), "pads": tuple(pool.attrs["pads"]),
                 "act_min": pool.act_min, "act_max": pool.act_max, "macs": pool.macs,
                 "scratch": pool.scratch, "scratch_by_path": dict(pool_paths),
                 "attrs": {k: v for k, v in pool.attrs.items() if k not in ("kernel", "stride", "pads",
                                                                              "scratch_by_path")}},
        "mid": {"name": mid.name, "shape": tuple(mid.shape)},
        "conv": {"name": conv.name, "macs": conv.macs, "scratch": conv.scratch, "scratch_by_path": dict(conv_paths)},
        "band_rows": band_rows,
        "band_offset": band_offset,
        "scratch_by_path": {k: band_offset + band_rows * row_bytes for k in conv_paths},
    })
    return Op(name=f"{conv.name}+{pool.name}", kind=KIND, inputs=list(conv.inputs), outputs=list(pool.outputs),
              attrs=attrs, weights=conv.weights, weight_scales=conv.weight_scales, bias=conv.bias, act=conv.act,
              multiplier=conv.multiplier, shift=conv.shift, act_min=conv.act_min, act_max=conv.act_max,
              kernel=conv.kernel, scratch=band_offset + band_rows * row_bytes, macs=conv.macs + pool.macs)


def fuse_all(g: Graph) -> Graph:
    """A graph (sharing tensors and ops with ``g``) with every fusable conv -> pool pair as one op."""
    tensors = dict(g.tensors)
    ops: list[Op] = []
    skip: set[int] = set()
    for op in g.ops:
        if id(op) in skip:
            continue
        pool = _fusable(g, op)
        if pool is None:
            ops.append(op)
            continue
        ops.append(_fuse_small(g, op, pool) if conv_small.pools_in_epilogue(op, pool) else _fuse(g, op, pool))
        skip.add(id(pool))
        del tensors[op.output]
    fused = Graph(tensors=tensors, ops=ops, inputs=list(g.inputs), outputs=list(g.outputs), layout=g.layout,
                  metadata=g.metadata, contract=g.contract)
    fused.check()
    return fused


def fuse_conv_pool(g: Graph, mode: str = "all") -> Graph:
    """The pass (after kernel_select, before memplan). ``mode``: "all" fuses every fusable pair, "none"
    nothing. (``esc2c emit --fuse auto`` is run_passes choosing between the two by arena size.)"""
    if mode not in MODES:
        raise ValueError(f"fuse mode must be one of {MODES}, got {mode!r}")
    return g if mode == "none" else fuse_all(g)


def unfuse(g: Graph) -> Graph:
    """A copy of the graph with every ``conv_pool`` op split back into its conv and pool ops and the conv
    output tensor restored (the ops share arrays with ``g``); the graph itself when nothing is fused."""
    if not any(op.kind == KIND for op in g.ops):
        return g
    tensors = dict(g.tensors)
    ops: list[Op] = []
    for op in g.ops:
        if op.kind != KIND:
            ops.append(op)
            continue
        a = op.attrs
        p, m, c = a["pool"], a["mid"], a["conv"]
        out = g.tensors[op.output]
        tensors[m["name"]] = Tensor(m["name"], tuple(m["shape"]), out.scale, out.zero_point)
        conv_attrs = {k: v for k, v in a.items() if k not in ("pool", "mid", "conv", "band_rows", "band_offset",
                                                             "scratch_offset", "overlap", "in_place",
                                                             "pool_in_kernel")}
        conv_attrs["scratch_by_path"] = dict(c["scratch_by_path"])
        ops.append(Op(name=c["name"], kind="conv", inputs=list(op.inputs), outputs=[m["name"]], attrs=conv_attrs,
                      weights=op.weights, weight_scales=op.weight_scales, bias=op.bias, act=op.act,
                      multiplier=op.multiplier, shift=op.shift, act_min=op.act_min, act_max=op.act_max,
                      kernel=op.kernel, scratch=c["scratch"], macs=c["macs"]))
        pool_attrs = copy.deepcopy(p["attrs"])
        pool_attrs.update(kernel=tuple(p["kernel"]), stride=tuple(p["stride"]), pads=tuple(p["pads"]),
                          scratch_by_path=dict(p["scratch_by_path"]))
        ops.append(Op(name=p["name"], kind=p["kind"], inputs=[m["name"]], outputs=list(op.outputs),
                      attrs=pool_attrs, act_min=p["act_min"], act_max=p["act_max"], kernel=p["fn"],
                      scratch=p["scratch"], macs=p["macs"]))
    return Graph(tensors=tensors, ops=ops, inputs=list(g.inputs), outputs=list(g.outputs), layout=g.layout,
                 metadata=dict(g.metadata), contract=g.contract)
