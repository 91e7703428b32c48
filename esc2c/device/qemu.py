"""The firmware on QEMU mps2-an500 (Cortex-M7): console and exit code through semihosting, the serial
protocol on UART0 exposed as a TCP server that pyserial opens as ``socket://127.0.0.1:PORT``, and
optionally the instruction-count plugin (esc2c/device/plugin/insn_count.c, built here on first use)."""
from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import serial

from esc2c import proc
from esc2c.device.build import require_tool
from esc2c.errors import Esc2cError
from esc2c.resources import qemu_plugin_source

PLUGIN_SOURCE = qemu_plugin_source()
MACHINE = "mps2-an500"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "esc2c"


def build_plugin() -> Path:
    """Compile the plugin with the host gcc into the cache (keyed by the source's hash)."""
    source = PLUGIN_SOURCE.read_bytes()
    lib = cache_dir() / f"insn_count-{hashlib.sha256(source).hexdigest()[:16]}.so"
    if lib.is_file():
        return lib
    gcc = require_tool("gcc", "gcc")
    lib.parent.mkdir(parents=True, exist_ok=True)
    tmp = lib.with_suffix(f".{os.getpid()}.tmp")
    r = proc.run([gcc, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden",
                  "-o", str(tmp), str(PLUGIN_SOURCE)], f"building the QEMU plugin {PLUGIN_SOURCE}", proc.BUILD_TIMEOUT,
                 merge_stderr=True)
    if r.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise Esc2cError(f"building the QEMU plugin {PLUGIN_SOURCE} failed:\n{proc.tail(r.out, 25)}")
    os.replace(tmp, lib)
    return lib


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class QemuSession:
    """One QEMU run of a firmware ELF. Use as a context manager; the process is always killed on exit.

    ``serial_url`` is the pyserial URL of the firmware's protocol UART; ``finish()`` waits for the
    firmware to exit and returns its exit code (from SYS_EXIT_EXTENDED) and console text."""

    def __init__(self, elf: str | Path, timeout: float = 300.0, mark_addr: int | None = None,
                 profile_log: str | Path | None = None, funcs_file: str | Path | None = None, window: int = 0):
        self.elf = Path(elf)
        self.timeout = timeout
        self.mark_addr = mark_addr
        self.profile_log = Path(profile_log) if profile_log else None
        self.funcs_file = Path(funcs_file) if funcs_file else None
        self.window = window
        self.proc: subprocess.Popen | None = None
        self.port = _free_port()
        self._console = tempfile.TemporaryFile()
        self.started = 0.0

    @property
    def serial_url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [require_tool("qemu-system-arm", "qemu-system-arm"), "-M", MACHINE, "-display", "none",
               "-monitor", "none", "-serial", f"tcp:127.0.0.1:{self.port},server=on,wait=off",
               "-semihosting-config", "enable=on,target=native", "-kernel", str(self.elf)]
        if self.mark_addr is not None:
            if self.profile_log is None:
                raise ValueError("a profile run needs profile_log")
            spec = f"{build_plugin()},mark=0x{self.mark_addr:x},out={self.profile_log}"
            if self.funcs_file is not None:
                spec += f",funcs={self.funcs_file},window={self.window}"
            cmd += ["-plugin", spec]
        return cmd

    def __enter__(self) -> "QemuSession":
        if not self.elf.is_file():
            raise Esc2cError(f"{self.elf}: firmware ELF not found")
        self.proc = subprocess.Popen(self.command(), stdout=self._console, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        self.kill()
        self._console.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def console(self) -> str:
        self._console.seek(0)
        return self._console.read().decode("utf-8", "replace")

    def connect(self, connect_timeout: float = 10.0):
        """Open the protocol UART (retrying while QEMU starts its TCP server)."""

        deadline = time.monotonic() + connect_timeout
        while True:
            if self.proc.poll() is not None:
                raise Esc2cError(f"QEMU exited with code {self.proc.returncode} before its serial port opened:\n"
                                 f"{self.console()[-2000:]}")
            try:
                return serial.serial_for_url(self.serial_url, timeout=0.2)
            except (serial.SerialException, OSError) as e:
                if time.monotonic() > deadline:
                    raise Esc2cError(f"cannot connect to QEMU's serial port {self.serial_url}: {e}") from e
                time.sleep(0.05)

    def finish(self) -> tuple[int, str]:
        """Wait (within the session timeout) for the firmware to exit; returns (exit code, console)."""
        left = max(0.1, self.timeout - (time.monotonic() - self.started))
        try:
            code = self.proc.wait(timeout=left)
        except subprocess.TimeoutExpired:
            self.kill()
            raise Esc2cError(f"QEMU run of {self.elf} timed out after {self.timeout:g} s; console:\n"
                             f"{self.console()[-2000:]}") from None
        return code, self.console()

    def remaining(self) -> float:
        return self.timeout - (time.monotonic() - self.started)
