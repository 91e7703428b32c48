"""CMake configure and build steps with a deadline, and build trees keyed to their source: a build tree
records the source directory, its own location and the configure options it was made with
(``.esc2c-build-key``); when any of them changed (a copied or moved project, other options) the tree is
wiped and configured again, so a build never runs another directory's sources. Every CMake error fails
the step with the last lines of its output."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from esc2c import proc
from esc2c.errors import Esc2cError

KEY_FILE = ".esc2c-build-key"


def _cache_home(build: Path) -> str | None:
    try:
        text = (build / "CMakeCache.txt").read_text(errors="replace")
    except OSError:
        return None
    m = re.search(r"^CMAKE_HOME_DIRECTORY:INTERNAL=(.*)$", text, re.M)
    return m.group(1).strip() if m else None


def build_key(src: Path, build: Path, args: list[str]) -> dict:
    return {"source": str(Path(src).resolve()), "build": str(Path(build).resolve()), "args": list(args)}


def is_current(src: Path, build: Path, args: list[str]) -> bool:
    """True when ``build`` was configured by :func:`configure` from ``src`` at this place with ``args``."""
    try:
        key = json.loads((build / KEY_FILE).read_text())
    except (OSError, ValueError):
        return False
    home = _cache_home(build)
    return key == build_key(src, build, args) and home is not None and Path(home).resolve() == Path(src).resolve()


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as e:
        raise Esc2cError(f"{path}: cannot write it ({e.strerror or e})") from None


def configure(src: Path, build: Path, args: list[str], what: str, timeout: float = proc.BUILD_TIMEOUT) -> None:
    """Configure ``build`` from ``src`` unless it is already configured from there with ``args``."""
    src, build = Path(src), Path(build)
    if is_current(src, build, args):
        return
    if build.exists():
        shutil.rmtree(build)
    try:
        build.mkdir(parents=True)
    except OSError as e:
        raise Esc2cError(f"{build}: cannot create the build directory ({e.strerror or e})") from None
    log = build / "configure.log"
    r = proc.run(["cmake", "-S", str(src), "-B", str(build), *args], what, timeout, merge_stderr=True)
    _write(log, r.out)
    if r.returncode != 0:
        raise Esc2cError(f"{what} failed (full log: {log}):\n{proc.tail(r.out, 25)}")
    _write(build / KEY_FILE, json.dumps(build_key(src, build, args)) + "\n")


def build(build_dir: Path, target: str | None, what: str, timeout: float = proc.BUILD_TIMEOUT,
          log_name: str = "build.log") -> None:
    build_dir = Path(build_dir)
    cmd = ["cmake", "--build", str(build_dir), "-j", str(min(4, os.cpu_count() or 1))]
    if target:
        cmd += ["--target", target]
    r = proc.run(cmd, what, timeout, merge_stderr=True)
    log = build_dir / log_name
    _write(log, r.out)
    if r.returncode != 0:
        raise Esc2cError(f"{what} failed (full log: {log}):\n{proc.tail(r.out, 25)}")
