"""Static memory plan: every activation tensor and scratch buffer at an offset in one arena.

1. Liveness over the op list: a tensor lives from the op that produces it (the graph input from before
   the first op) to its last reader (the graph output to the end). A reshape view shares the bytes of its
   source, so the source lives as long as the view's readers.
2. In-place: an elementwise kernel (residual add, requantize: ``OpKind.in_place_inputs``) writes its output
   over an input of the same size that dies at that op; the two share one buffer.
3. Overlap: a kernel that reads its input and writes its output in raster (pixel) order -- CMSIS-NN's
   generic convolution (arm_convolve_s8 behind the wrapper), max pool, average pool, and the runtime's
   grouped convolution and rescaling average pool -- may write its output over the part of a dying input
   it has already consumed. With the output starting g bytes before the input, it is safe when, for every
   output pixel q, the output bytes of pixels 0..q end at or before the first input byte pixel q reads:
   (q + 1) * C_out - g <= C_in * first_input_pixel(q). The smallest such g is used (:func:`overlap_gap`).
   This also holds for kernels that batch pixels (their writes lag further behind their reads). A fused
   conv + pool (``conv_pool``) writes pooled rows after the input rows they need: ops/conv_pool.py. Which
   kernels qualify, and their gap, are the op kinds' ``raster_ordered`` and ``overlap_gap``.
4. Scratch buffers live only during their op.
5. Packing: buffers are placed in decreasing size order, each into the best-fitting free gap among the
   already placed buffers whose lifetimes overlap it, at the lowest offset that fits (first fit; an
   overlap pair may share bytes as allowed above); several orderings (by size, lifetime, start, end, and
   seeded random ones), with and without the overlap pairs, are tried and the smallest arena kept. The
   lower bound without overlap (the largest sum of buffer sizes live at one time) is reported beside it;
   with overlap the arena can be smaller than that bound.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from esc2c.compiler import ops
from esc2c.compiler.ir import Graph, Op

ALIGN = 4  # CMSIS-NN scratch buffers hold int16/int32; activation buffers are aligned alike
RANDOM_ORDERS = 24  # seeded random placement orders tried beside the heuristic ones


def _align(n: int, a: int = ALIGN) -> int:
    return (n + a - 1) // a * a


@dataclass
class Buffer:
    key: str
    size: int
    start: int
    end: int
    offset: int = -1


def _pack(bufs: list[Buffer], order, partners: dict[tuple[str, str], int]) -> int:
    """Place buffers one by one (in ``order``) at the lowest offset where they fit. Two buffers live at the
    same time may not share bytes, except an overlap pair (output key, input key) -> m: the output may sit
    anywhere up to m bytes before the input's start (and over it), or wholly after the input."""
    placed: list[Buffer] = []
    for b in sorted(bufs, key=order):
        forbidden = []  # open intervals of start offsets b may not take
        for p in placed:
            if not (p.start <= b.end and b.start <= p.end):
                continue
            if (b.key, p.key) in partners:  # b is the output, p the input it may overlap
                forbidden.append((p.offset - partners[(b.key, p.key)], p.offset + p.size))
            elif (p.key, b.key) in partners:  # b is the input, p the output already placed
                forbidden.append((p.offset - b.size, p.offset + partners[(p.key, b.key)]))
            else:
                forbidden.append((p.offset - b.size, p.offset + p.size))
        candidates = sorted({0} | {hi for _, hi in forbidden if hi > 0})
        b.offset = next(c for c in candidates if all(not (lo < c < hi) for lo, hi in forbidden))
        placed.append(b)
    return max((b.offset + b.size for b in bufs), default=0)


def raster_ordered(op: Op, g: Graph) -> bool:
    """Whether the op's kernel reads its input and writes its output pixel by pixel in raster order."""
    return ops.get(op.kind).raster_ordered(op, g)


def overlap_gap(op: Op, g: Graph) -> int:
    """Smallest g (bytes) such that the output may start g bytes before the input (see the module doc)."""
    return ops.get(op.kind).overlap_gap(op, g)


def _liveness(g: Graph):
    n_ops = len(g.ops)
    root = {name: name for name in g.tensors}
    for op in g.ops:
        if ops.get(op.kind).view:
            root[op.output] = root[op.inputs[0]]
    start, end = {}, {}
    for name in g.inputs:
        start[name] = -1
    for i, op in enumerate(g.ops):
        for t in op.outputs:
            start.setdefault(root[t], i)
        for t in op.inputs:
            end[root[t]] = max(end.get(root[t], i), i)
    for t in g.outputs:
        end[root[t]] = n_ops
    for r in start:
        end.setdefault(r, start[r])
    return root, start, end


def _groups(g: Graph, root, start, end, overlap: bool):
    """In-place groups (tensors sharing one buffer) and overlap pairs between group buffers."""
    group = {r: r for r in start}

    def members(gid):
        return [m for m, k in group.items() if k == gid]

    notes, pairs = {}, {}
    for i, op in enumerate(g.ops):
        out = root[op.output]
        in_place = ops.get(op.kind).in_place_inputs(op)
        if in_place:
            for t in in_place:
                gid = group[root[t]]
                if max(end[m] for m in members(gid)) == i and g.tensors[t].size == g.tensors[op.output].size \
                        and gid != group[out]:
                    for m in members(group[out]):
                        group[m] = gid
                    notes[i] = ("in_place", t)
                    break
        elif overlap and raster_ordered(op, g):
            t = op.inputs[0]
            gid = group[root[t]]
            if max(end[m] for m in members(gid)) == i and len(members(group[out])) == 1:
                gap = overlap_gap(op, g)
                size_out = g.tensors[op.output].size
                if gap < size_out:
                    pairs[(out, gid)] = min(gap, size_out)
                    notes[i] = ("overlap", (t, gap))
    return group, notes, pairs


def _plan(g: Graph, overlap: bool):
    root, start, end = _liveness(g)
    group, notes, pairs = _groups(g, root, start, end, overlap)
    bufs = []
    for gid in sorted(set(group.values())):
        ms = [m for m, k in group.items() if k == gid]
        size = max(g.tensors[m].size for m in ms)
        bufs.append(Buffer(f"t:{gid}", _align(size), min(start[m] for m in ms), max(end[m] for m in ms)))
    for i, op in enumerate(g.ops):
        if op.scratch > 0:
            bufs.append(Buffer(f"s:{i}", _align(op.scratch), i, i))
    partners = {(f"t:{group[o]}", f"t:{gi}"): m for (o, gi), m in pairs.items()}
    orders = [lambda b: (-b.size, b.start), lambda b: (-(b.end - b.start), -b.size),
              lambda b: (b.start, -b.size), lambda b: (-b.end, -b.size), lambda b: (-b.start, -b.size)]
    rng = np.random.default_rng(0)
    for _ in range(RANDOM_ORDERS if partners else 0):  # overlap pairs make the order matter more
        rank = {b.key: r for b, r in zip(bufs, rng.permutation(len(bufs)))}
        orders.append(lambda b, rank=rank: rank[b.key])
    best = None
    for order in orders:
        peak = _pack(bufs, order, partners)
        if best is None or peak < best[0]:
            best = (peak, {b.key: b.offset for b in bufs})
    for b in bufs:
        b.offset = best[1][b.key]
    lower = max(sum(b.size for b in bufs if b.start <= s <= b.end) for s in range(-1, len(g.ops) + 1))
    used = {k for k in partners if _overlaps(best[1], bufs, k)}
    notes = {i: n for i, n in notes.items() if n[0] != "overlap" or
             (f"t:{group[root[g.ops[i].output]]}", f"t:{group[root[n[1][0]]]}") in used}
    return best[0], bufs, root, group, notes, lower, partners


def _overlaps(offsets, bufs, pair) -> bool:
    size = {b.key: b.size for b in bufs}
    o, i = pair
    return offsets[o] < offsets[i] + size[i] and offsets[i] < offsets[o] + size[o]


def memplan(g: Graph) -> Graph:
    plans = [_plan(g, overlap=False), _plan(g, overlap=True)]
    peak, bufs, root, group, notes, _, partners = min(plans, key=lambda p: p[0])
    offsets = {b.key: b.offset for b in bufs}
    for name, t in g.tensors.items():
        t.offset = offsets[f"t:{group[root[name]]}"]
        t.alias_of = root[name] if root[name] != name else None
    for i, op in enumerate(g.ops):
        op.attrs.pop("in_place", None)
        op.attrs.pop("overlap", None)
        op.attrs["scratch_offset"] = offsets.get(f"s:{i}")
        if i in notes:
            kind, what = notes[i]
            op.attrs[kind] = what
    g.arena_size = _align(peak, 16)
    g.plan_stats = {
        "arena_bytes": g.arena_size,
        "peak_bytes": peak,
        "lower_bound_bytes": plans[0][5],  # without overlap pairs; overlap can go below it
        # the model's tensors, conv outputs a fused conv + pool never stores included
        "sum_of_tensors_bytes": sum(t.size for n, t in g.tensors.items() if root[n] == n)
        + sum(ops.get(op.kind).hidden_tensor_bytes(op) for op in g.ops),
        "scratch_bytes_max": max((op.scratch for op in g.ops), default=0),
        "in_place_ops": sum(1 for op in g.ops if "in_place" in op.attrs),
        "overlapped_ops": sum(1 for op in g.ops if "overlap" in op.attrs),
    }
    _check(bufs, partners)
    return g


def _check(bufs: list[Buffer], partners: dict[tuple[str, str], int]) -> None:
    for i, a in enumerate(bufs):
        for b in bufs[i + 1:]:
            if not (a.start <= b.end and b.start <= a.end):
                continue
            for o, n in ((a, b), (b, a)):
                if (o.key, n.key) in partners:
                    m = partners[(o.key, n.key)]
                    if not (o.offset <= n.offset - m or o.offset >= n.offset + n.size):
                        raise AssertionError(f"memory plan: {o} overlaps {n} by more than allowed")
                    break
            else:
                if a.offset < b.offset + b.size and b.offset < a.offset + a.size:
                    raise AssertionError(f"memory plan overlap: {a} and {b}")
