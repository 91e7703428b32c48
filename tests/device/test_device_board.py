"""STM32F746ZG firmware: builds warning-free to .elf/.bin/.hex with a size report, places the vector
table, stack and arena where the linker script says, fails clearly (by how much) when the model does
not fit, and `esc2c flash` says what is missing when no tool or no probe is there."""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess

import pytest

from esc2c.cli import main as cli_main
from esc2c.errors import Esc2cError
from esc2c.device import flash as flash_mod
from esc2c.device.boards import available_boards, copy_board
from esc2c.device.build import build_firmware, elf_symbol
from tests.fixtures.fake_model import FakeModel

needs_arm = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs gcc-arm-none-eabi")


def test_boards_are_listed_and_copied_self_contained(tmp_path):
    assert {"stm32f746zg", "mps2-an500"} <= set(available_boards())
    dest = copy_board("stm32f746zg", tmp_path / "board")
    for name in ("board.cmake", "toolchain.cmake", "linker.ld", "startup.c", "board.c",
                 "common/main.c", "common/protocol.c", "common/firmware.cmake", "common/sections_m7.ld"):
        assert (dest / name).is_file(), name
    with pytest.raises(Esc2cError, match="unknown board 'nucleo'.*stm32f746zg"):
        copy_board("nucleo", tmp_path / "x")


@needs_arm
def test_stm32_firmware_images_size_report_and_memory_map(tmp_path):
    out = FakeModel(seed=1).write(tmp_path / "out", n_vectors=3)
    fw = build_firmware(out, "stm32f746zg")
    for ext in ("elf", "bin", "hex"):
        assert (fw.build_dir / f"firmware.{ext}").stat().st_size > 0
    assert (fw.flash_limit, fw.ram_limit) == (1 << 20, 320 << 10)
    assert fw.flash_bytes == (fw.build_dir / "firmware.bin").stat().st_size
    assert "firmware size for stm32f746zg: flash" in (fw.build_dir / "build.log").read_text()
    # vector table at the start of flash; stack at the bottom of DTCM, arena right above it
    assert elf_symbol(fw.elf, "Reset_Handler") >> 20 == 0x080
    nm = subprocess.run(["arm-none-eabi-nm", str(fw.elf)], capture_output=True, text=True, check=True).stdout
    syms = {m.group(2): int(m.group(1), 16) for m in re.finditer(r"^([0-9a-f]+) \w (\S+)$", nm, re.M)}
    assert syms["vector_table"] == 0x08000000
    assert syms["_estack"] == 0x20000000 + 16 * 1024
    assert syms["esc2c_arena"] == syms["_estack"]
    # the reset vector points at Reset_Handler (Thumb bit set)
    image = (fw.build_dir / "firmware.bin").read_bytes()
    assert int.from_bytes(image[0:4], "little") == syms["_estack"]
    assert int.from_bytes(image[4:8], "little") == syms["Reset_Handler"] | 1


@needs_arm
def test_firmware_that_does_not_fit_fails_saying_by_how_much(tmp_path):
    out = FakeModel(seed=2).write(tmp_path / "out", n_vectors=2)
    board = copy_board("stm32f746zg", out / "board")
    text = (board / "board.cmake").read_text().replace("set(ESC2C_FLASH_LIMIT 1048576)", "set(ESC2C_FLASH_LIMIT 4096)")
    (board / "board.cmake").write_text(text)
    build = tmp_path / "build"
    subprocess.run(["cmake", "-S", str(out), "-B", str(build), f"-DCMAKE_TOOLCHAIN_FILE={board / 'toolchain.cmake'}",
                    "-DCMAKE_BUILD_TYPE=Release"], check=True, capture_output=True)
    proc = subprocess.run(["cmake", "--build", str(build)], capture_output=True, text=True)
    assert proc.returncode != 0
    flash = (build / "firmware.bin").stat().st_size
    assert f"firmware does not fit stm32f746zg: flash is over by {flash - 4096} bytes" in proc.stdout + proc.stderr


def _path_with(tmp_path, tools: dict[str, str]) -> str:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, script in tools.items():
        f = bindir / name
        f.write_text("#!/bin/sh\n" + script)
        f.chmod(f.stat().st_mode | stat.S_IEXEC)
    return os.pathsep.join([str(bindir), os.environ["PATH"]])


def test_flash_without_any_tool_says_what_to_install(tmp_path, monkeypatch):
    which = shutil.which
    monkeypatch.setattr(flash_mod.shutil, "which", lambda name: None if name in flash_mod.PROBES else which(name))
    with pytest.raises(Esc2cError, match=r"no flashing tool found .*pip install pyocd"):
        flash_mod.flash(tmp_path)
    with pytest.raises(Esc2cError, match=r"openocd is not installed"):
        flash_mod.flash(tmp_path, probe="openocd")


@needs_arm
def test_flash_without_a_probe_says_so(tmp_path, monkeypatch):
    out = FakeModel(seed=6).write(tmp_path / "out", n_vectors=1)
    # st-flash as installed by stlink-tools answers this way when no ST-LINK is on USB
    monkeypatch.setenv("PATH", _path_with(tmp_path, {"st-flash": 'echo "Couldn\'t find any ST-Link devices" >&2; exit 255\n'}))
    with pytest.raises(Esc2cError, match=r"no debug probe attached: st-flash found no ST-LINK"):
        flash_mod.flash(out, probe="st-flash", echo=lambda s: None)
    assert cli_main(["flash", str(out), "--probe", "st-flash"]) == 1
