"""The C front end built for this machine, on its own (no model): runtime/frontend/ + the generated
files + CMSIS-DSP's portable C, compiled with the host gcc into a cache directory keyed by the sources'
hash. ``run`` feeds it int16 PCM clips and returns the int8 model inputs it computes, so tests and
benchmarks compare it with :mod:`esc2c.logmel.python_frontend`."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from esc2c import proc
from esc2c.errors import Esc2cError
from esc2c.features import FeatureSpec
from esc2c.logmel import cmsis_dsp, tables
from esc2c.resources import runtime_dir

RUNTIME = runtime_dir() / "frontend"
CFLAGS = ["-O2", "-std=c99", "-D__GNUC_PYTHON__"]
WARN = ["-Wall", "-Wextra", "-Werror"]


def _cache() -> Path:
    return Path(os.environ.get("ESC2C_CACHE") or Path.home() / ".cache" / "esc2c") / "frontend-host"


def _gcc() -> str:
    gcc = shutil.which("gcc")
    if gcc is None:
        raise Esc2cError("gcc not found on PATH (install the Debian package gcc)")
    return gcc


def _compile(cmd: list[str], what: str) -> None:
    r = proc.run(cmd, f"compiling {what}", proc.BUILD_TIMEOUT, merge_stderr=True)
    if r.returncode != 0:
        raise Esc2cError(f"compiling {what} failed:\n{proc.tail(r.out, 25)}")


def _dsp_objects(dsp: Path) -> list[Path]:
    """CMSIS-DSP's FFT sources compiled once per source tree."""
    key = hashlib.sha256(("|".join(CFLAGS) + str(dsp)).encode()).hexdigest()[:16]
    d = _cache() / f"dsp-{key}"
    objs = [d / (Path(s).stem + ".o") for s in cmsis_dsp.SOURCES]
    if all(o.is_file() for o in objs):
        return objs
    d.mkdir(parents=True, exist_ok=True)
    inc = [f"-I{dsp / i}" for i in cmsis_dsp.INCLUDE_DIRS]
    for src, obj in zip(cmsis_dsp.SOURCES, objs):
        tmp = obj.with_suffix(f".{os.getpid()}.tmp")
        _compile([_gcc(), *CFLAGS, *inc, "-c", str(dsp / src), "-o", str(tmp)], src)
        os.replace(tmp, obj)
    return objs


def build(spec: FeatureSpec, input_scale: float, input_zero_point: int) -> Path:
    """The host front-end runner (runtime/frontend/frontend_host.c) for this spec and quantization."""
    dsp = cmsis_dsp.cmsis_dsp_path()
    files = tables.render(spec, input_scale, input_zero_point)
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(files[name].encode())
    for src in sorted(RUNTIME.glob("*.[ch]")):
        h.update(src.read_bytes())
    exe = _cache() / f"frontend_host-{h.hexdigest()[:16]}"
    if exe.is_file():
        return exe
    objs = _dsp_objects(dsp)
    _cache().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=_cache()) as tmp:
        for name, text in files.items():
            (Path(tmp) / name).write_text(text)
        inc = [f"-I{tmp}", f"-I{RUNTIME}"] + [f"-I{dsp / i}" for i in cmsis_dsp.INCLUDE_DIRS]
        out = Path(tmp) / "frontend_host"
        _compile([_gcc(), *CFLAGS, *WARN, *inc, str(RUNTIME / "esc2c_frontend.c"), str(RUNTIME / "frontend_host.c"),
                  str(Path(tmp) / tables.TABLES_C), *map(str, objs), "-lm", "-o", str(out)], "the host front end")
        os.replace(out, exe)
    return exe


def run(exe: Path, spec: FeatureSpec, pcm: np.ndarray, mode: str = "clip", timeout: float = 600.0) -> np.ndarray:
    """int8 ``[clips, n_mels, frames]`` the C front end computes from int16 PCM ``[clips, n]``
    (``mode`` "clip": esc2c_frontend_clip; "stream": hop by hop through esc2c_frontend_push/window)."""
    pcm = np.ascontiguousarray(pcm, dtype="<i2")
    if pcm.ndim != 2:
        raise Esc2cError(f"front end: PCM must be [clips, samples], got shape {pcm.shape}")
    r = proc.run([str(exe), mode, str(pcm.shape[1])], f"C front end {exe} {mode}", timeout, stdin=pcm.tobytes())
    if r.returncode != 0:
        raise Esc2cError(f"{exe} {mode} failed ({r.returncode}): {proc.tail(r.err, 5)}")
    if len(r.stdout) != pcm.shape[0] * spec.n_mels * spec.frames:
        raise Esc2cError(f"{exe} {mode} wrote {len(r.stdout)} bytes, expected "
                         f"{pcm.shape[0] * spec.n_mels * spec.frames}")
    return np.frombuffer(r.stdout, np.int8).reshape(pcm.shape[0], spec.n_mels, spec.frames)
