"""Every wait has a deadline (host runner, verify's host run, QEMU) and a timeout names what hung with
its last output; build trees are keyed to their source (a copied project rebuilds its own code); the
ESC2C_SANITIZE CMake option builds the emitted project and the runtime tests under ASan/UBSan."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from esc2c import cmake
from esc2c.compiler.emit import emit
from esc2c.compiler.verify import build_host, verify
from esc2c.errors import Esc2cError
from esc2c.device.build import build_firmware, build_host_runner
from esc2c.device.runner import HostReference, run_qemu

from _compiler_models import build

ROOT = Path(__file__).resolve().parents[1]
SANITIZE = ("-DESC2C_SANITIZE=ON",)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    d = tmp_path_factory.mktemp("deadline")
    return emit(build("strip", d), d / "proj", n_vectors=2, contract="tflite").out


def _sleep_for(path: Path) -> str:
    """A sleep duration no other process on the machine is likely to use (pgrep looks machine-wide)."""
    return f"{3000 + os.getpid() % 1000}.{abs(hash(str(path))) % 1000:03d}"


def _hanging_exe(path: Path) -> Path:
    # prints a line, then a child that never ends: the whole process group must go
    path.write_text(f"#!/bin/sh\necho '@model starting up'\nsleep {_sleep_for(path)} &\nwait\n")
    path.chmod(0o755)
    return path


def test_host_runner_that_never_returns_is_stopped_and_named(tmp_path):
    exe = _hanging_exe(tmp_path / "host_runner")
    t0 = time.monotonic()
    with pytest.raises(Esc2cError, match=r"host runner .*host_runner info did not finish within 1 s and was "
                                         r"stopped; last output:\n@model starting up"):
        HostReference(exe, timeout=1.0)
    assert time.monotonic() - t0 < 10
    left = subprocess.run(["pgrep", "-f", f"sleep {_sleep_for(exe)}"], capture_output=True, text=True).stdout.split()
    assert not left, "the hung runner's child survived"


def test_verify_host_run_has_a_deadline(project, tmp_path, monkeypatch):
    from esc2c.compiler import verify as V

    monkeypatch.setattr(V, "build_host", lambda out, rounding, extra_args=(): _hanging_exe(tmp_path / "esc2c_host"))
    with pytest.raises(Esc2cError, match=r"host run of .*esc2c_host did not finish within 2 s"):
        verify(project, n=2, n_features=0, timeout=2.0)


@pytest.fixture(scope="module")
def sanitized(project):
    """The project verified with its host build under ASan/UBSan (-DESC2C_SANITIZE=ON)."""
    return project, verify(project, n=3, n_features=0, extra_args=SANITIZE)


def test_sanitized_build_of_the_emitted_project_verifies(sanitized):
    project, rep = sanitized
    assert rep.ok, rep.text()
    exe = project / "build-host-double" / "esc2c_host"
    assert "libasan" in subprocess.run(["ldd", str(exe)], capture_output=True, text=True).stdout
    ctest = subprocess.run(["ctest", "--test-dir", str(exe.parent), "--output-on-failure"], capture_output=True,
                           text=True, timeout=300)
    assert ctest.returncode == 0, ctest.stdout[-2000:]


def test_sanitized_runtime_unit_tests(tmp_path):
    b = tmp_path / "rt"
    cmake.configure(ROOT, b, ["-DESC2C_SANITIZE=ON"], "configuring the runtime tests")
    cmake.build(b, None, "building the runtime tests")
    assert "libasan" in subprocess.run(["ldd", str(b / "test_kernels_double")], capture_output=True, text=True).stdout
    r = subprocess.run(["ctest", "--test-dir", str(b), "--output-on-failure"], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0 and "100% tests passed" in r.stdout, r.stdout[-3000:]


def test_copied_project_builds_its_own_sources(sanitized, tmp_path):
    project, _ = sanitized
    args = ["-DESC2C_ROUNDING=DOUBLE", *SANITIZE]
    assert cmake.is_current(project, project / "build-host-double", args)
    b = tmp_path / "b"
    subprocess.run(["cp", "-a", str(project), str(b)], check=True)
    assert not cmake.is_current(b, b / "build-host-double", args)     # the copy's tree belongs to the original
    (b / "model.c").write_text('#error "this is the copy"\n' + (b / "model.c").read_text())
    with pytest.raises(Esc2cError, match=r"host build failed .*\n(.*\n)*.*this is the copy"):
        build_host(b, "double", SANITIZE)
    assert str(b) in (b / "build-host-double" / "CMakeCache.txt").read_text()
    assert cmake.is_current(project, project / "build-host-double", args)    # the original is untouched


@pytest.mark.slow
def test_firmware_that_hangs_on_qemu_says_its_self_test_never_finished(project, tmp_path):
    p = tmp_path / "hang"
    shutil.copytree(project, p, symlinks=True)
    src = (p / "model.c").read_text()
    j = src.index("{", src.index("int esc2c_model_run(")) + 1
    # only the firmware build spins forever in the model (the host build stays the reference)
    (p / "model.c").write_text("static volatile int esc2c_spin = 1;\n" + src[:j]
                               + "\n#ifdef __arm__\n    while (esc2c_spin) { }\n#endif\n" + src[j:])
    build_firmware(p, "mps2-an500")
    build_host_runner(p)
    t0 = time.monotonic()
    with pytest.raises(Esc2cError, match=r"timed out after 20 s.*self-test never finished \(0 of 2 test vectors"):
        run_qemu(p, vectors=2, timeout=20.0, echo=lambda s: None)
    assert time.monotonic() - t0 < 20 * 1.5     # one deadline, not one per request
