"""The emitted CMake project checks the CMSIS-NN it is pointed at (CMSIS_NN_PATH) at configure time:
API generation (arm_cmsis_nn_status), header layout (4.0.0 vs later releases), and the sources it compiles."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from _compiler_models import build
from esc2c.compiler.emit import cmsis_paths, emit
from esc2c.contract import TFLITE

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("nn_compat")
    return emit(build("strip", tmp), tmp / "out", n_vectors=2, kernels="cmsis", contract=TFLITE).out


def _configure(project: Path, build_dir: Path, nn: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["cmake", "-S", str(project), "-B", str(build_dir), f"-DCMSIS_NN_PATH={nn}"],
                          capture_output=True, text=True)


def _host_flags(build_dir: Path) -> str:
    return (build_dir / "CMakeFiles" / "esc2c_model.dir" / "flags.make").read_text()


def _copy_nn(tmp_path: Path) -> Path:
    nn = tmp_path / "cmsis_nn"
    shutil.copytree(cmsis_paths()[0], nn)
    return nn


def test_bakenn_subset_is_the_4_0_0_layout(project, tmp_path):
    nn = cmsis_paths()[0]
    r = _configure(project, tmp_path / "b", nn)
    assert r.returncode == 0, r.stderr
    revision = re.search(r"\$Revision:\s*(V\.[0-9.]+)", (nn / "Include" / "arm_nnfunctions.h").read_text()).group(1)
    n_sources = len(list((nn / "Source").rglob("*.c")))
    assert f"esc2c: CMSIS-NN {revision} (4.0.0 header layout), {n_sources} sources from {nn}" in r.stdout
    assert "-D__GNUC_PYTHON__" in _host_flags(tmp_path / "b")  # 4.0.0's plain-C branch on the build machine


def test_later_layout_drops_host_shim_and_float_kernels(project, tmp_path):
    nn = _copy_nn(tmp_path)
    (nn / "Include" / "Internal").mkdir()
    (nn / "Include" / "Internal" / "arm_nn_compiler.h").write_text("/* compiler abstraction of later releases */\n")
    floats = nn / "Source" / "ConvolutionFunctions"
    for suffix in ("f16", "f32"):
        (floats / f"arm_convolve_{suffix}.c").write_text("#error float kernels must not be compiled\n")
    n_int = len([p for p in (nn / "Source").rglob("*.c") if not re.search(r"_f(16|32)\.c$", p.name)])
    r = _configure(project, tmp_path / "b", nn)
    assert r.returncode == 0, r.stderr
    assert f"(post-4.0.0 header layout), {n_int} sources from {nn}" in r.stdout
    assert "__GNUC_PYTHON__" not in _host_flags(tmp_path / "b")
    build_files = "".join(p.read_text() for p in (tmp_path / "b" / "CMakeFiles" / "esc2c_model.dir").glob("*.make"))
    assert "arm_convolve_f32.c" not in build_files and "arm_convolve_f16.c" not in build_files
    assert "arm_convolve_s8.c" in build_files


def test_pre_4_0_0_api_is_refused_at_configure(project, tmp_path):
    nn = _copy_nn(tmp_path)
    for h in (nn / "Include").glob("*.h"):
        h.write_text(h.read_text().replace("arm_cmsis_nn_status", "arm_status"))
    r = _configure(project, tmp_path / "b", nn)
    assert r.returncode != 0
    err = " ".join(r.stderr.split())  # CMake wraps long messages
    assert "declares arm_cmsis_nn_status" in err and "needs CMSIS-NN 4.0.0 or later" in err
    assert not (tmp_path / "b" / "Makefile").exists()
