"""CMSIS-DSP sources for the front end's FFT (arm_rfft_fast_f32), from the ``cmsisdsp==1.10.3`` sdist.

Where they come from, first match wins:

1. ``$ESC2C_CMSIS_DSP``: a directory with CMSIS-DSP's ``Include/``, ``PrivateInclude/`` and ``Source/``
   (an extracted sdist or an upstream checkout);
2. the extracted sdist in the cache (``$ESC2C_CACHE`` or ``~/.cache/esc2c``)/``cmsisdsp-1.10.3``;
3. otherwise the sdist is fetched with ``pip download --no-deps --no-binary :all: cmsisdsp==1.10.3`` into the
   cache and extracted there.

The sources are never copied into the project or an emitted project: the emitted CMakeLists.txt points its
``CMSIS_DSP_PATH`` cache variable at the directory (override it on the cmake command line).
"""
from __future__ import annotations

import os
import sys
import tarfile
import tempfile
from pathlib import Path

from esc2c import proc
from esc2c.errors import Esc2cError

VERSION = "1.10.3"
ENV_VAR = "ESC2C_CMSIS_DSP"

# What the real FFT needs: arm_rfft_fast_f32 -> arm_cfft_f32 (radix-8 butterflies, bit reversal) and the
# size-specific init functions with their twiddle and bit-reversal tables.
SOURCES = (
    "Source/TransformFunctions/arm_rfft_fast_f32.c",
    "Source/TransformFunctions/arm_rfft_fast_init_f32.c",
    "Source/TransformFunctions/arm_cfft_f32.c",
    "Source/TransformFunctions/arm_cfft_init_f32.c",
    "Source/TransformFunctions/arm_cfft_radix8_f32.c",
    "Source/TransformFunctions/arm_bitreversal2.c",
    "Source/CommonTables/arm_common_tables.c",
    "Source/CommonTables/arm_const_structs.c",
)
INCLUDE_DIRS = ("Include", "PrivateInclude")


def _cache_root() -> Path:
    return Path(os.environ.get("ESC2C_CACHE") or Path.home() / ".cache" / "esc2c")


def check_tree(root: Path) -> Path:
    """``root`` if it holds every source and include directory the front end builds with, else an error."""
    missing = [p for p in SOURCES + tuple(f"{d}/arm_math.h" if d == "Include" else d for d in INCLUDE_DIRS)
               if not (root / p).exists()]
    if missing:
        raise Esc2cError(f"{root}: not a CMSIS-DSP source tree (missing {', '.join(missing[:3])}"
                         f"{' ...' if len(missing) > 3 else ''})")
    return root


def _fetch(dest: Path) -> Path:
    """pip-download the sdist and extract it to ``dest`` (atomically: a temp dir renamed at the end)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".cmsisdsp-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--no-build-isolation", f"cmsisdsp=={VERSION}", "-d", tmp]
        r = proc.run(cmd, f"pip download cmsisdsp=={VERSION}", 600, merge_stderr=True)
        sdists = list(Path(tmp).glob(f"cmsisdsp-{VERSION}.tar.gz"))
        if r.returncode != 0 or not sdists:
            tail = proc.tail(r.out, 5)
            raise Esc2cError(f"cannot download the cmsisdsp=={VERSION} sdist (CMSIS-DSP sources for the front end's "
                             f"FFT); set {ENV_VAR} to a CMSIS-DSP source tree instead. pip said:\n{tail}")
        with tarfile.open(sdists[0]) as tf:
            tf.extractall(tmp, filter="data")
        extracted = Path(tmp) / f"cmsisdsp-{VERSION}"
        check_tree(extracted)
        if dest.exists():  # another process won the race
            return check_tree(dest)
        os.replace(extracted, dest)
    return dest


def cmsis_dsp_path(fetch: bool = True) -> Path:
    """The CMSIS-DSP source tree to build the front end with (see the module docstring)."""
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env).expanduser().resolve()
        if not p.is_dir():
            raise Esc2cError(f"{ENV_VAR}={env}: no such directory")
        return check_tree(p)
    cached = _cache_root() / f"cmsisdsp-{VERSION}"
    if cached.is_dir():
        return check_tree(cached)
    if not fetch:
        raise Esc2cError(f"no CMSIS-DSP sources: {cached} does not exist and {ENV_VAR} is not set")
    return _fetch(cached)
