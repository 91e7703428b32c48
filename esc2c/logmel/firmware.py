"""The raw-audio firmware of an emitted project (``firmware_audio``: runtime/frontend/audio_firmware.c): build
it for a board next to the project's ``firmware`` and run it on QEMU mps2-an500, optionally with the
instruction-count plugin, which gives the instructions of the whole-clip front end, the model and every
streamed hop (see audio_check.h for the marks)."""
from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from esc2c import cmake, proc
from esc2c.device.build import build_firmware, elf_symbol, require_tool
from esc2c.device.profile import parse_marks
from esc2c.device.qemu import QemuSession
from esc2c.errors import Esc2cError


@dataclass
class AudioFirmware:
    board: str
    elf: Path
    flash_bytes: int
    flash_limit: int
    ram_bytes: int
    ram_limit: int


@dataclass
class ClipResult:
    index: int
    identical: int
    size: int
    max_diff: int
    predicted: int
    expected: int
    stream_ok: bool
    status: int
    passed: bool


@dataclass
class AudioRun:
    clips: list[ClipResult]
    exit_code: int
    console: str
    # per clip (with profile=True): instructions of the whole-clip front end, of the model, of each hop pushed
    frontend_instructions: list[int] = field(default_factory=list)
    model_instructions: list[int] = field(default_factory=list)
    hop_instructions: list[list[int]] = field(default_factory=list)


def build(out: str | Path, board: str = "mps2-an500") -> AudioFirmware:
    """Build the project's firmware (esc2c.device.build) and its firmware_audio for ``board``."""

    out = Path(out).resolve()
    if not (out / "audio_vectors.h").is_file():
        raise Esc2cError(f"{out}: the project has no front end (emit a model with a FeatureSpec, or --frontend)")
    fw = build_firmware(out, board)
    cmake.build(fw.build_dir, "firmware_audio", f"building the {board} raw-audio firmware", log_name="build_audio.log")
    report = dict(line.split(None, 1) for line in (fw.build_dir / "size_report_audio.txt").read_text().splitlines())
    flash, flash_limit = (int(v) for v in report["flash"].split())
    ram, ram_limit = (int(v) for v in report["ram"].split())
    return AudioFirmware(board, fw.build_dir / "firmware_audio.elf", flash, flash_limit, ram, ram_limit)


_LINE = re.compile(r"^@audio (\d+) (\d+) (\d+) (\d+) (-?\d+) (-?\d+) ([01]) (-?\d+) (PASS|FAIL)$", re.M)


def parse_console(text: str) -> list[ClipResult]:
    return [ClipResult(int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6]), m[7] == "1", int(m[8]),
                       m[9] == "PASS") for m in _LINE.finditer(text)]


def split_marks(marks: list[int], hops_per_clip: int, n_clips: int):
    """Marks per clip: 3 (front end, model), 2 per streamed hop, 1 after the window -> (front-end, model,
    per-hop) instruction counts per clip."""
    per = 3 + 2 * hops_per_clip + 1
    if len(marks) != per * n_clips:
        raise Esc2cError(f"profile: {len(marks)} marks logged, expected {per} per clip for {n_clips} clips")
    fe, model, hops = [], [], []
    for c in range(n_clips):
        m = marks[c * per:(c + 1) * per]
        fe.append(m[1] - m[0])
        model.append(m[2] - m[1])
        hops.append([m[3 + 2 * k + 1] - m[3 + 2 * k] for k in range(hops_per_clip)])
    return fe, model, hops


def hops_per_clip(out: Path) -> int:
    """Hops the streaming check pushes per clip: until the ring has produced FRAMES columns."""
    cfg = (Path(out) / "esc2c_frontend_config.h").read_text()

    def val(name):
        return int(re.search(rf"#define {name}\s+(\d+)", cfg).group(1))

    return val("ESC2C_FE_FRAMES") - 1 + val("ESC2C_FE_BUF_LENGTH") // val("ESC2C_FE_HOP_LENGTH")


def run(out: str | Path, profile: bool = True, timeout: float = 600.0) -> tuple[AudioFirmware, AudioRun]:
    """Build firmware_audio for mps2-an500 and run it on QEMU; the clip results and, with ``profile``,
    the instruction counts."""

    out = Path(out).resolve()
    fw = build(out, "mps2-an500")
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "marks.log"
        mark = elf_symbol(fw.elf, "esc2c_profile_mark") if profile else None
        with QemuSession(fw.elf, timeout=timeout, mark_addr=mark, profile_log=log if profile else None) as q:
            code, console = q.finish()
        clips = parse_console(console)
        if not clips:
            raise Esc2cError(f"{fw.elf}: no @audio results on the console (exit code {code}):\n{console[-2000:]}")
        result = AudioRun(clips, code, console)
        if profile:
            marks, _ = parse_marks(log.read_text() if log.is_file() else "")
            result.frontend_instructions, result.model_instructions, result.hop_instructions = split_marks(
                marks, hops_per_clip(out), len(clips))
    return fw, result


_FRONTEND_SYMBOLS = re.compile(
    r"^(esc2c_fe_|esc2c_frontend_|frame_to_column|window_samples|arm_rfft_fast|arm_cfft|arm_radix8|arm_bitreversal|"
    r"twiddleCoef|armBitRevIndexTable|stage_rfft|merge_rfft|log10f$|__ieee754_log10f$|__ieee754_logf$|logf$)")


def frontend_footprint(elf: str | Path) -> dict[str, int]:
    """Flash bytes of the front end in a linked image (its code, CMSIS-DSP's FFT with the tables of the
    one size it uses, log10f from the C library, the generated window/mel tables), from the symbol sizes."""

    nm = require_tool("arm-none-eabi-nm", "gcc-arm-none-eabi")
    r = proc.run([nm, "-S", "--defined-only", str(elf)], f"reading the symbols of {elf}", 120)
    if r.returncode != 0:
        raise Esc2cError(f"{elf}: arm-none-eabi-nm failed: {proc.tail(r.err, 3)}")
    text = r.out
    sizes = {"code": 0, "fft_tables": 0, "frontend_tables": 0, "state_ram": 0}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 4:
            continue
        size, kind, name = int(parts[1], 16), parts[2], parts[3]
        if name == "fe_state":
            sizes["state_ram"] = size
        if not _FRONTEND_SYMBOLS.match(name):
            continue
        if kind in "Tt":
            sizes["code"] += size
        elif kind in "Rr":
            sizes["frontend_tables" if name.startswith("esc2c_fe_") else "fft_tables"] += size
    sizes["flash_total"] = sizes["code"] + sizes["fft_tables"] + sizes["frontend_tables"]
    return sizes
