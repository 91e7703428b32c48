"""Builds for an emitted project OUT: the Cortex-M7 firmware for a board, and the host reference runner
(the same model code compiled for this machine). Build trees live in OUT/.esc2c/; CMake rebuilds only
what changed."""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from esc2c import cmake, proc
from esc2c.errors import Esc2cError
from esc2c.device.boards import BOARDS_DIR, COMMON, copy_board

REQUIRED_FILES = ("model.h", "model.c", "test_vectors.h", "CMakeLists.txt")
WORK = ".esc2c"


@dataclass(frozen=True)
class Firmware:
    board: str
    elf: Path
    build_dir: Path
    flash_bytes: int
    flash_limit: int
    ram_bytes: int
    ram_limit: int


def check_project(out: str | Path) -> Path:
    out = Path(out).resolve()
    if not out.is_dir():
        raise Esc2cError(f"{out}: no such directory (expected a project written by `esc2c emit`)")
    missing = [name for name in REQUIRED_FILES if not (out / name).is_file()]
    if missing:
        raise Esc2cError(f"{out}: not an emitted esc2c project, missing {', '.join(missing)}")
    return out


def require_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise Esc2cError(f"{name} not found on PATH (install the Debian package {package})")
    return path


def _shadow_source(out: Path, board: str) -> Path:
    """A source tree that is OUT with board/ replaced by ``board``'s files: every other entry of OUT is
    a symlink, so the emitted CMakeLists.txt builds the same model sources."""
    src = out / WORK / f"src-{board}"
    src.mkdir(parents=True, exist_ok=True)
    wanted = {p.name for p in out.iterdir() if p.name not in ("board", WORK)}
    for entry in src.iterdir():
        if entry.name == "board" or (entry.name in wanted and entry.is_symlink()):
            continue
        if entry.is_symlink() or entry.is_file():
            entry.unlink()
        else:
            shutil.rmtree(entry)
    for name in wanted:
        link = src / name
        if link.is_symlink() and os.readlink(link) != str(out / name):
            link.unlink()                  # a copied or moved project: point at this project's files
        if not link.is_symlink():
            link.symlink_to(out / name)
    staged = src / ".board-staging"
    copy_board(board, staged)
    if not (src / "board").is_dir() or _tree_differs(staged, src / "board"):
        if (src / "board").exists():
            shutil.rmtree(src / "board")
        os.replace(staged, src / "board")
    else:
        shutil.rmtree(staged)
    return src


def _tree_differs(a: Path, b: Path) -> bool:
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return fa != fb or any((a / p).read_bytes() != (b / p).read_bytes() for p in fa)


# CMake's configurations; any other name builds without optimisation and, for the kernels, without their DSP path
BUILD_TYPES = ("Release", "MinSizeRel", "RelWithDebInfo", "Debug")


def build_firmware(out: str | Path, board: str = "mps2-an500", build_type: str = "Release",
                   extra_args: tuple[str, ...] = ()) -> Firmware:
    if build_type not in BUILD_TYPES:
        raise Esc2cError(f"build type must be one of {', '.join(BUILD_TYPES)}, got {build_type!r}")
    out = check_project(out)
    require_tool("cmake", "cmake")
    require_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi")
    src = _shadow_source(out, board)
    build = out / WORK / f"build-{board}"
    cmake.configure(src, build, [f"-DCMAKE_TOOLCHAIN_FILE={src / 'board' / 'toolchain.cmake'}",
                                 f"-DCMAKE_BUILD_TYPE={build_type}", *extra_args],
                    f"configuring the {board} firmware")
    cmake.build(build, "firmware", f"building the {board} firmware")
    report = dict(line.split(None, 1) for line in (build / "size_report.txt").read_text().splitlines())
    flash, flash_limit = (int(v) for v in report["flash"].split())
    ram, ram_limit = (int(v) for v in report["ram"].split())
    return Firmware(board, build / "firmware.elf", build, flash, flash_limit, ram, ram_limit)


def build_host_runner(out: str | Path, extra_args: tuple[str, ...] = ()) -> Path:
    """The host reference runner (boards/common/host_main.c linked with the project's esc2c_model)."""
    out = check_project(out)
    require_tool("cmake", "cmake")
    host = out / WORK / "host"
    src, build = host / "src", host / "build"
    src.mkdir(parents=True, exist_ok=True)
    lists = f"""cmake_minimum_required(VERSION 3.16)
project(esc2c_host_runner C)
add_subdirectory("{out}" model)
add_executable(host_runner "{BOARDS_DIR / COMMON / 'host_main.c'}")
target_include_directories(host_runner PRIVATE "{out}")
target_compile_options(host_runner PRIVATE -Wall -Wextra -Werror)
if(ESC2C_SANITIZE)
  target_compile_options(host_runner PRIVATE -fsanitize=address,undefined -fno-sanitize-recover=all)
  target_link_options(host_runner PRIVATE -fsanitize=address,undefined)
endif()
target_link_libraries(host_runner PRIVATE esc2c_model)
"""
    cml = src / "CMakeLists.txt"
    if not cml.is_file() or cml.read_text() != lists:
        cml.write_text(lists)
    cmake.configure(src, build, ["-DCMAKE_BUILD_TYPE=Release", *extra_args], "configuring the host runner")
    cmake.build(build, "host_runner", "building the host runner")
    return build / "host_runner"


def _nm(cmd: list[str]) -> str:
    r = proc.run(cmd, f"reading the symbols of {cmd[-1]}", 120)
    if r.returncode != 0:
        raise Esc2cError(f"{cmd[-1]}: arm-none-eabi-nm failed: {proc.tail(r.err, 3)}")
    return r.out


def elf_symbol(elf: Path, name: str) -> int:
    nm = require_tool("arm-none-eabi-nm", "gcc-arm-none-eabi")
    text = _nm([nm, str(elf)])
    m = re.search(rf"^([0-9a-fA-F]+) [TtWw] {re.escape(name)}$", text, re.M)
    if m is None:
        raise Esc2cError(f"{elf}: symbol {name} not found (is this esc2c firmware?)")
    return int(m.group(1), 16) & ~1


def elf_functions(elf: Path) -> list[tuple[int, int, str]]:
    """(start, end, name) of the functions in an ELF, sorted, aliases and overlaps dropped."""
    nm = require_tool("arm-none-eabi-nm", "gcc-arm-none-eabi")
    text = _nm([nm, "-S", "-n", "--defined-only", str(elf)])
    funcs: list[tuple[int, int, str]] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "TtWw":
            start, size = int(parts[0], 16) & ~1, int(parts[1], 16)
            if size and (not funcs or start >= funcs[-1][1]):
                funcs.append((start, start + size, parts[3]))
    return funcs
