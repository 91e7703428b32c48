"""`esc2c emit --board stm32f746zg` output on the Cortex-M7: the STM32F746ZG firmware builds with its size
report, and on QEMU mps2-an500 (CMSIS-NN's DSP path) the model gives the host build's bits on 50 inputs
and on every layer; the instruction profile adds up and repeats exactly."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from _compiler_models import build
from esc2c.compiler.emit import emit
from esc2c.device.build import build_firmware
from esc2c.device.runner import run_qemu

pytestmark = pytest.mark.skipif(
    any(shutil.which(t) is None for t in ("cmake", "arm-none-eabi-gcc", "qemu-system-arm")),
    reason="needs cmake, gcc-arm-none-eabi and qemu-system-arm")


@pytest.fixture(scope="module")
def resnet_project(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("emitted")
    return emit(build("resnet", tmp), tmp / "out", board="stm32f746zg", n_vectors=4).out


def test_stm32_firmware_from_emitted_project(resnet_project):
    fw = build_firmware(resnet_project, "stm32f746zg")
    assert 0 < fw.flash_bytes <= fw.flash_limit and 0 < fw.ram_bytes <= fw.ram_limit
    # emit's pre-build count (esc2c/compiler/footprint.py: code, stack, vectors) bounds the built image; a
    # loose bound here (this model links ~10 KB less code than the reserve): test_fit_flash holds the tight one
    fit = json.loads((resnet_project / "esc2c.json").read_text())["fit"]
    assert fw.flash_bytes <= fit["flash"] and fw.ram_bytes <= fit["ram"]
    assert (fw.build_dir / "firmware.hex").is_file() and (fw.build_dir / "firmware.bin").is_file()
    # CMSIS-NN took its DSP (SIMD) path for the Cortex-M7
    dis = subprocess.run(["arm-none-eabi-objdump", "-d", str(fw.elf)], capture_output=True, text=True, check=True).stdout
    assert "smlad" in dis


def test_emitted_model_on_qemu_is_bit_exact_with_host_on_every_layer(resnet_project, tmp_path):
    report = run_qemu(resnet_project, vectors=50, debug_layers=True, profile=True, profile_dir=tmp_path / "a",
                      echo=lambda s: None)
    assert (report.identical, report.vectors, report.layers_checked) == (50, 50, True)
    p = report.profile
    counts = [L.instructions for L in p.layers]
    assert sum(counts) == p.total_instructions and all(c > 0 for c in counts)
    assert {L.op for L in p.layers} >= {"conv", "add"}
    fn = {f["name"]: f["instructions"] for f in p.functions}
    assert sum(fn.values()) + p.unlisted_instructions == p.total_instructions
    assert "esc2c_conv_fast_s8" in fn  # the project's conv kernel (default `--kernels fast`)
    again = run_qemu(resnet_project, vectors=4, profile=True, profile_dir=tmp_path / "b", echo=lambda s: None).profile
    assert [L.instructions for L in again.layers] == counts
    assert again.per_vector_instructions == p.per_vector_instructions
