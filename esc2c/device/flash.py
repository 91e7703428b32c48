"""`esc2c flash`: build the STM32F746ZG firmware of an emitted project and write it to a Nucleo-F746ZG
through a standard tool: pyOCD (``pip install pyocd``), st-flash (stlink-tools) or OpenOCD."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from esc2c.errors import Esc2cError
from esc2c.device.build import build_firmware

PROBES = ("pyocd", "st-flash", "openocd")
BOARD = "stm32f746zg"
FLASH_BASE = 0x08000000

# What each tool prints when no debug probe is connected.
NO_PROBE_SIGNS = ("no available debug probes", "no connected debug probes", "couldn't find any st-link",
                  "no st-link", "unable to open", "open failed", "no device found", "libusb_open() failed",
                  "error connecting dp", "no probe")
INSTALL_HINT = "install one: `pip install pyocd`, the stlink-tools package (st-flash), or openocd"


def available_probes() -> list[str]:
    return [p for p in PROBES if shutil.which(p)]


def flash_command(probe: str, fw_dir: Path, pyocd_target: str | None = None) -> list[str]:
    elf, binary, hexfile = fw_dir / "firmware.elf", fw_dir / "firmware.bin", fw_dir / "firmware.hex"
    if probe == "pyocd":
        return ["pyocd", "flash", *(["-t", pyocd_target] if pyocd_target else []), str(hexfile)]
    if probe == "st-flash":
        return ["st-flash", "--reset", "write", str(binary), hex(FLASH_BASE)]
    if probe == "openocd":
        return ["openocd", "-f", "board/st_nucleo_f7.cfg", "-c", f"program {elf} verify reset exit"]
    raise Esc2cError(f"unknown probe tool {probe!r}: choose one of {', '.join(PROBES)}")


def flash(out, probe: str | None = None, pyocd_target: str | None = None, timeout: float = 120.0,
          echo=print) -> str:
    """Returns the name of the tool that flashed the board; raises Esc2cError with a clear reason."""
    if probe is not None and probe not in PROBES:
        raise Esc2cError(f"unknown probe tool {probe!r}: choose one of {', '.join(PROBES)}")
    tools = available_probes()
    if probe is None:
        if not tools:
            raise Esc2cError(f"no flashing tool found on PATH (looked for {', '.join(PROBES)}); {INSTALL_HINT}")
        probe = tools[0]
    elif probe not in tools:
        raise Esc2cError(f"{probe} is not installed (not on PATH); {INSTALL_HINT}")
    fw = build_firmware(out, BOARD)
    echo(f"firmware {fw.elf}: flash {fw.flash_bytes:,} / {fw.flash_limit:,} B, RAM {fw.ram_bytes:,} / {fw.ram_limit:,} B")
    cmd = flash_command(probe, fw.build_dir, pyocd_target)
    echo("$ " + " ".join(cmd))
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Esc2cError(f"{probe} did not finish within {timeout:g} s (is the board powered and the probe free?)") from None
    text = proc.stdout or ""
    if proc.returncode != 0:
        low = text.lower()
        last = text.strip().splitlines()[-1] if text.strip() else "(no output)"
        if any(sign in low for sign in NO_PROBE_SIGNS):
            raise Esc2cError(f"no debug probe attached: {probe} found no ST-LINK / CMSIS-DAP probe "
                             f"(connect the Nucleo-F746ZG by USB; {probe} said: {last})")
        if probe == "pyocd" and "target type" in low:
            raise Esc2cError(f"pyocd does not know the target: run `pyocd pack install stm32f746zg` or pass "
                             f"--pyocd-target (pyocd said: {last})")
        raise Esc2cError(f"{probe} failed with exit code {proc.returncode}: {last}")
    echo(f"flashed {fw.build_dir / 'firmware.hex'} with {probe}")
    return probe
