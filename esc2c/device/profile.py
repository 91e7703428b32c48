"""Per-layer instruction profile from the QEMU plugin's marker log.

The firmware calls esc2c_profile_mark() before an inference, after each layer (from the layer hook) and
after the inference, so one inference leaves L + 2 marks m[0..L+1]. Layer i gets the instructions from
m[i] to m[i+1], the last layer up to m[L+1] (its share includes the return from esc2c_model_run), so the
layers add up exactly to the whole inference m[L+1] - m[0]. Each boundary carries the few instructions
of the hook call. Latency is an estimate: instructions at one per cycle at 216 MHz; QEMU models no timing.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from esc2c.errors import Esc2cError
from esc2c.fsutil import atomic_path, atomic_write_text

CLOCK_HZ = 216_000_000
LATENCY_NOTE = "estimate from instruction counts (1 instruction/cycle at 216 MHz; QEMU models no timing)"


def parse_marks(text: str) -> tuple[list[int], int | None]:
    marks, total = [], None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "mark":
            marks.append(int(value))
        elif key == "total":
            total = int(value)
    return marks, total


def parse_functions(text: str, funcs: list[tuple[int, int, str]]) -> tuple[list[tuple[str, int]], int]:
    """"func I N" lines -> [(function name, instructions)] sorted by count, and the "unlisted" count
    (blocks starting outside every ELF function symbol), both over the first inference."""
    counts, unlisted = [], 0
    for line in text.splitlines():
        parts = line.split()
        if parts[:1] == ["func"]:
            counts.append((funcs[int(parts[1])][2], int(parts[2])))
        elif parts[:1] == ["unlisted"]:
            unlisted = int(parts[1])
    return sorted(counts, key=lambda kv: -kv[1]), unlisted


def inference_marks(marks: list[int], num_layers: int) -> list[list[int]]:
    """Split the mark log into the L + 2 marks of each inference."""
    per = num_layers + 2
    if not marks or len(marks) % per:
        raise Esc2cError(f"profile: {len(marks)} marks logged, not a multiple of {per} (= {num_layers} layers + 2): "
                         "the layer hook did not run once per layer")
    return [marks[i:i + per] for i in range(0, len(marks), per)]


def layer_instructions(group: list[int]) -> tuple[list[int], int]:
    n = len(group) - 2
    counts = [group[i + 1] - group[i] for i in range(n - 1)] + [group[n + 1] - group[n - 1]]
    return counts, group[-1] - group[0]


@dataclass
class LayerProfile:
    index: int
    name: str
    op: str
    shape: str
    kernel: str
    macs: int
    instructions: int
    macs_per_instruction: float
    share: float
    latency_ms_estimate: float


@dataclass
class Profile:
    layers: list[LayerProfile]
    total_instructions: int
    total_macs: int
    macs_per_instruction: float
    latency_ms_estimate: float
    arena_bytes: int
    flash_bytes: int
    ram_bytes: int
    clock_hz: int = CLOCK_HZ
    latency_note: str = LATENCY_NOTE
    per_vector_instructions: list[int] = field(default_factory=list)
    functions: list[dict] = field(default_factory=list)  # first inference, by function (ELF symbols)
    unlisted_instructions: int = 0


def layer_meta(out: Path, names: list[str], sizes: list[int]) -> list[tuple[str, str, str]]:
    """(op, output shape, kernel) per layer, from the layer comments and output dims in the emitted
    model.c ("layer N: NAME (OP) -> KERNEL"); where absent, the layer name and its output bytes."""
    model_c = (out / "model.c").read_text(errors="replace") if (out / "model.c").is_file() else ""
    blocks = re.split(r"/\*\s*layer\s+(\d+):", model_c)
    found: dict[int, tuple[str, str, str]] = {}
    for i in range(1, len(blocks) - 1, 2):
        idx, body = int(blocks[i]), blocks[i + 1]
        kind = re.match(r"\s*\S+\s+\(([^)]*)\)\s*->\s*(\w+)", body)
        dims = re.search(r"out_dims\s*=\s*\{\s*\.n\s*=\s*(\d+),\s*\.h\s*=\s*(\d+),\s*\.w\s*=\s*(\d+),\s*\.c\s*=\s*(\d+)", body)
        found[idx] = (kind.group(1) if kind else "", "x".join(dims.groups()[1:]) if dims else "",
                      kind.group(2) if kind else "")
    result = []
    for i, (name, size) in enumerate(zip(names, sizes)):
        op, shape, kernel = found.get(i, ("", "", ""))
        result.append((op or re.sub(r"_?\d+$", "", name) or name, shape or f"{size} B", kernel))
    return result


def build_profile(groups: list[list[int]], names: list[str], macs: list[int], meta: list[tuple[str, str, str]],
                  arena: int, flash: int, ram: int, functions: list[tuple[str, int]] = (),
                  unlisted: int = 0) -> Profile:
    counts, whole = layer_instructions(groups[0])
    layers = []
    for i, (name, m, c, (op, shape, kernel)) in enumerate(zip(names, macs, counts, meta)):
        layers.append(LayerProfile(i, name, op, shape, kernel, int(m), int(c), m / c if c else 0.0,
                                   c / whole if whole else 0.0, c / CLOCK_HZ * 1e3))
    total_macs = int(sum(macs))
    return Profile(layers, whole, total_macs, total_macs / whole if whole else 0.0, whole / CLOCK_HZ * 1e3,
                   arena, flash, ram, per_vector_instructions=[layer_instructions(g)[1] for g in groups],
                   functions=[{"name": n, "instructions": c, "share": c / whole if whole else 0.0} for n, c in functions],
                   unlisted_instructions=unlisted)


def format_table(p: Profile) -> str:
    head = f"{'#':>3} {'layer':<22} {'op':<16} {'shape':<14} {'MACs':>11} {'instructions':>13} {'MAC/instr':>9} {'share':>6} {'ms@216MHz*':>10}"
    lines = [head, "-" * len(head)]
    for L in p.layers:
        lines.append(f"{L.index:>3} {L.name[:22]:<22} {L.op[:16]:<16} {L.shape[:14]:<14} {L.macs:>11,} "
                     f"{L.instructions:>13,} {L.macs_per_instruction:>9.2f} {L.share:>6.1%} {L.latency_ms_estimate:>10.2f}")
    lines.append("-" * len(head))
    lines.append(f"{'':>3} {'whole inference':<22} {'':<16} {'':<14} {p.total_macs:>11,} {p.total_instructions:>13,} "
                 f"{p.macs_per_instruction:>9.2f} {1:>6.1%} {p.latency_ms_estimate:>10.2f}")
    lines.append(f"* latency: {p.latency_note}")
    if p.functions:
        lines.append("where the instructions go (functions, one inference):")
        for f in p.functions[:10]:
            lines.append(f"    {f['name'][:40]:<40} {f['instructions']:>13,} {f['share']:>6.1%}")
    lines.append(f"arena peak {p.arena_bytes:,} B; firmware flash {p.flash_bytes:,} B, RAM {p.ram_bytes:,} B "
                 "(Cortex-M7 image linked to the STM32F746ZG budget)")
    return "\n".join(lines)


def write_profile(p: Profile, dest: str | Path) -> tuple[Path, Path]:
    """profile.json and profile.png (bar chart of instructions per layer) in ``dest``."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    json_path, png_path = dest / "profile.json", dest / "profile.png"
    atomic_write_text(json_path, json.dumps(asdict(p), indent=2) + "\n")

    import matplotlib  # lazy: matplotlib only when a plot is written (Agg set before pyplot loads)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after matplotlib.use("Agg")

    fig, ax = plt.subplots(figsize=(9, 0.35 * len(p.layers) + 1.6))
    labels = [f"{L.index} {L.name}" for L in p.layers]
    values = [L.instructions / 1e6 for L in p.layers]
    bars = ax.barh(labels, values, color="#4477aa")
    ax.invert_yaxis()
    for bar, L in zip(bars, p.layers):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {L.macs_per_instruction:.2f} MAC/instr",
                va="center", fontsize=8)
    ax.set_xlabel("instructions per inference (millions), QEMU Cortex-M7")
    ax.set_title(f"{p.total_instructions / 1e6:.2f} M instructions, {p.macs_per_instruction:.2f} MAC/instr, "
                 f"~{p.latency_ms_estimate:.1f} ms at 216 MHz (estimate)", fontsize=10)
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return json_path, png_path
