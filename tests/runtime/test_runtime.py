"""runtime/: the committed kernel vectors equal the contract's output, and the C unit tests pass (ctest)."""
import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _gen():
    spec = importlib.util.spec_from_file_location("gen_kernel_vectors", ROOT / "runtime/tests/gen_kernel_vectors.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_vectors_match_the_contract():
    assert (ROOT / "runtime/tests/kernel_vectors.h").read_text() == _gen().generate()


def test_vectors_tell_the_rounding_modes_apart():
    text = _gen().generate()

    def arr(name):
        line = next(ln for ln in text.splitlines() if f" {name}[" in ln)
        return np.array([int(v) for v in line.split("{")[1].split("}")[0].split(",")])

    for name in ("req_expect", "add_expect", "ap_expect", "gc_expect"):
        assert np.any(arr(f"{name}_double") != arr(f"{name}_single")), name


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_runtime_ctest(tmp_path):
    subprocess.run(["cmake", "-S", str(ROOT), "-B", str(tmp_path)], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(tmp_path), "-j2"], check=True, capture_output=True)
    r = subprocess.run(["ctest", "--test-dir", str(tmp_path), "--output-on-failure"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "100% tests passed" in r.stdout and "runtime_kernels_single" in r.stdout
