"""esc2c installed from a wheel, away from the checkout (run with -m slow): the main chain of scripts/main.sh
(compress on the built-in synthetic sound set, emit for the STM32F746ZG, verify on the host, run on the
emulated Cortex-M7 with a profile) through the fresh environment's own ``esc2c`` entry point, from a
working directory outside the checkout. It fails when the wheel lacks a template, a runtime or board file,
the QEMU plugin's source, or when any code still finds them through the source tree.

How it gets there in a few minutes, offline:

- the wheel is built with this environment's pip and setuptools (``pip wheel --no-deps
  --no-build-isolation``, the same PEP 517 build as ``pip install .`` or ``python -m build --wheel``) from a
  copy of the working tree, so no stale ``build/`` of the checkout can leak into it;
- a fresh venv (``python -m venv``, no system site-packages) gets the wheel with its own pip, ``--no-deps``;
- the third-party dependencies (torch, onnxruntime, ...) are this environment's: a ``.pth`` file in the
  fresh venv lists this environment's site-packages directories. Such a line only appends the directory to
  ``sys.path``; the ``.pth`` files inside it are not run, so the editable install's finder (which maps
  ``esc2c`` to a checkout) never loads, and the fresh venv's own site-packages comes first anyway. The
  subprocesses run without PYTHONPATH, and the test asserts that ``esc2c`` and every resource directory it
  uses are inside the fresh venv.

The fresh venv is made by this interpreter's base Python, so the dependencies' compiled extensions match.
"""
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("cmake", "gcc", "arm-none-eabi-gcc", "qemu-system-arm")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                                 reason=f"needs {', '.join(TOOLS)} (scripts/setup.sh installs them)")]

# the tiny settings of tests/compress/test_compress.py: the full chain on the synthetic set in a few seconds
TINY = {"synthetic_per_class": 6, "width": 0.5, "prune_ratio": 0.6, "ratio_sweep": [0.3],
        "features": {"n_mels": 16, "clip_seconds": 1.0, "n_fft": 256, "win_length": 256, "hop_length": 128},
        "epochs_teacher": 2, "epochs_prune": 1, "epochs_qat_ta": 1, "epochs_qakd": 1, "batch_size": 16,
        "calib_batches": 2, "threads": 1}
# top-level folders of the checkout that are not part of the source (.gitignore)
NOT_SOURCE = {".git", ".venv", "build", "runs", "out", ".cache", ".pytest_cache", ".hypothesis"}


def _copy_source(dest: Path) -> Path:
    def ignore(d, names):
        skip = {n for n in names if n in ("__pycache__",) or n.endswith((".egg-info", ".pyc", ".o", ".elf"))}
        return skip | (NOT_SOURCE & set(names) if Path(d) == ROOT else set())
    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)
    return dest


def _run(cmd, cwd, env, timeout=900):
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, timeout=timeout, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed (exit {r.returncode}):\n{r.stdout[-6000:]}"
    return r.stdout


def test_wheel_in_a_fresh_venv_runs_the_main_chain_outside_the_checkout(tmp_path):
    assert ROOT not in tmp_path.resolve().parents, "the test needs a temporary directory outside the checkout"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(ESC2C_CACHE=str(tmp_path / "cache"), XDG_CACHE_HOME=str(tmp_path / "xdg-cache"),
               PYTHONNOUSERSITE="1", OMP_NUM_THREADS="1")

    # the wheel
    src = _copy_source(tmp_path / "src")
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", wheels, src],
         tmp_path, env)
    (wheel,) = wheels.glob("esc2c-*.whl")

    # a fresh venv with the wheel and, through a .pth line, this environment's third-party packages
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], tmp_path, env)
    py, esc2c = venv / "bin" / "python", venv / "bin" / "esc2c"
    _run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], tmp_path, env)
    purelib = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path,
                        env).strip())
    deps = [p for p in dict.fromkeys(site.getsitepackages()) if Path(p).is_dir()]
    (purelib / "_esc2c_test_deps.pth").write_text("".join(f"{p}\n" for p in deps))

    work = tmp_path / "work"
    work.mkdir()
    probe = ("import esc2c, esc2c.resources as r, esc2c.templating as t; "
             "print(esc2c.__file__); print(r.templates_dir()); print(r.runtime_dir()); print(r.boards_dir()); "
             "print(r.qemu_plugin_source()); print(t.environment().loader.searchpath[0])")
    located = [Path(line) for line in _run([py, "-c", probe], work, env).splitlines()]
    for p in located:
        assert p.exists() and venv.resolve() in p.resolve().parents, f"{p} is not inside the fresh venv {venv}"
    assert located[0].parent == purelib / "esc2c"

    cfg = work / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    _run([esc2c, "compress", "--config", cfg, "--no-baselines", "-o", "runs/default"], work, env)
    _run([esc2c, "emit", "runs/default/model.onnx", "--board", "stm32f746zg", "-o", "build/default"], work, env)
    project = work / "build" / "default"
    for f in ("model.c", "CMakeLists.txt", "esc2c_frontend_tables.c", "tflm/main.cc", "board/board.cmake",
              "board/common/main.c", "runtime/src/esc2c_kernels.c", "runtime/frontend/esc2c_frontend.c"):
        assert (project / f).is_file(), f
    out = _run([esc2c, "verify", "build/default"], work, env)
    assert "PASS" in out, out
    out = _run([esc2c, "run", "build/default", "--target", "qemu", "--profile"], work, env)
    assert "vectors bit-identical to the host build" in out and "profile written to" in out, out
    assert list((tmp_path / "xdg-cache" / "esc2c").glob("insn_count-*.so")), \
        "the profile did not build the QEMU plugin from the installed source"
