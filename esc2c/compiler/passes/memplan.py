"""Static memory plan: every activation tensor and scratch buffer at an offset in one arena.

1. Liveness over the op list: a tensor lives from the op that produces it (the graph input from before
   the first op) to its last reader (the graph output to the end). A reshape view shares the bytes of its
   source, so the source lives as long as the view's readers.
2. In-place: an elementwise kernel (residual add, requantize) writes its output over an input of the
   same size that dies at that op; the two become one buffer.
3. Scratch buffers live only during their op.
4. Packing: buffers are placed in decreasing size order, each into the best-fitting free gap among the
   already placed buffers whose lifetimes overlap it (TFLite's "greedy by size" with best fit); three
   orderings are tried and the smallest arena kept. The lower bound (the largest sum of sizes live at
   one time) is reported beside it.
"""
from __future__ import annotations

from dataclasses import dataclass

from esc2c.compiler.ir import Graph
from esc2c.compiler.passes.kernel_select import IN_PLACE

ALIGN = 4  # CMSIS-NN scratch buffers hold int16/int32; activations are aligned alike


def _align(n: int, a: int = ALIGN) -> int:
    return (n + a - 1) // a * a


@dataclass
class Buffer:
    key: str
    size: int
    start: int
    end: int
    offset: int = -1


def _pack(bufs: list[Buffer], order) -> int:
    placed: list[Buffer] = []
    for b in sorted(bufs, key=order):
        busy = sorted((p.offset, p.offset + p.size) for p in placed if p.start <= b.end and b.start <= p.end)
        best, best_gap, cursor = None, None, 0
        for lo, hi in busy:
            gap = lo - cursor
            if gap >= b.size and (best_gap is None or gap < best_gap):
                best, best_gap = cursor, gap
            cursor = max(cursor, hi)
        b.offset = best if best is not None else cursor
        placed.append(b)
    return max((b.offset + b.size for b in bufs), default=0)


def memplan(g: Graph) -> Graph:
    n_ops = len(g.ops)
    root = {name: name for name in g.tensors}
    for op in g.ops:
        if op.kind == "reshape":
            root[op.output] = root[op.inputs[0]]
    start, end = {}, {}
    for name in g.inputs:
        start[name] = -1
    for i, op in enumerate(g.ops):
        for t in op.outputs:
            r = root[t]
            start.setdefault(r, i)
        for t in op.inputs:
            r = root[t]
            end[r] = max(end.get(r, i), i)
    for t in g.outputs:
        end[root[t]] = n_ops
    for r in start:
        end.setdefault(r, start[r])

    # in-place groups (union of a dying input and the output of an elementwise kernel)
    group = {r: r for r in start}

    def find(r):
        while group[r] != r:
            r = group[r]
        return r

    for i, op in enumerate(g.ops):
        if op.kernel not in IN_PLACE:
            continue
        out = root[op.output]
        for t in op.inputs:
            gi = find(root[t])
            members = [r for r in start if find(r) == gi]
            if (max(end[m] for m in members) == i and g.tensors[t].size == g.tensors[op.output].size
                    and gi != find(out)):
                group[find(out)] = gi
                op.attrs["in_place"] = t
                break

    groups: dict[str, list[str]] = {}
    for r in start:
        groups.setdefault(find(r), []).append(r)
    bufs = []
    for gid, members in groups.items():
        size = max(g.tensors[m].size for m in members)
        bufs.append(Buffer(f"t:{gid}", _align(size), min(start[m] for m in members), max(end[m] for m in members)))
    for i, op in enumerate(g.ops):
        if op.scratch > 0:
            bufs.append(Buffer(f"s:{i}", _align(op.scratch), i, i))

    orders = [lambda b: (-b.size, b.start), lambda b: (-(b.end - b.start), -b.size),
              lambda b: (b.start, -b.size)]
    best_peak, best_offsets = None, None
    for order in orders:
        peak = _pack(bufs, order)
        if best_peak is None or peak < best_peak:
            best_peak, best_offsets = peak, {b.key: b.offset for b in bufs}
    for b in bufs:
        b.offset = best_offsets[b.key]

    offsets = {b.key: b.offset for b in bufs}
    for name, t in g.tensors.items():
        r = root[name]
        t.offset = offsets[f"t:{find(r)}"]
        t.alias_of = r if r != name else None
    for i, op in enumerate(g.ops):
        op.attrs["scratch_offset"] = offsets.get(f"s:{i}")

    lower = 0
    for step in range(-1, n_ops + 1):
        lower = max(lower, sum(b.size for b in bufs if b.start <= step <= b.end))
    g.arena_size = _align(best_peak, 16)
    g.plan_stats = {
        "arena_bytes": g.arena_size,
        "peak_bytes": best_peak,
        "lower_bound_bytes": lower,
        "sum_of_tensors_bytes": sum(t.size for n, t in g.tensors.items() if root[n] == n),
        "scratch_bytes_max": max((op.scratch for op in g.ops), default=0),
        "in_place_ops": sum(1 for op in g.ops if "in_place" in op.attrs),
    }
    _check(g, bufs)
    return g


def _check(g: Graph, bufs: list[Buffer]) -> None:
    for i, a in enumerate(bufs):
        for b in bufs[i + 1:]:
            if a.start <= b.end and b.start <= a.end and a.offset < b.offset + b.size and b.offset < a.offset + a.size:
                raise AssertionError(f"memory plan overlap: {a} and {b}")
