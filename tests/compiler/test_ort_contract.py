"""The onnxruntime contract: a model onnxruntime's quantize_static wrote is emitted for onnxruntime's own
integer arithmetic by default, and its C equals onnxruntime's session on that very file (full optimisation,
session.qdqisint8allowed=1) on the logits and on every quantized tensor, on the host and on QEMU."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from _compiler_models import build
from esc2c.compiler.emit import emit
from esc2c.compiler.verify import verify
from esc2c.contract import ONNXRUNTIME, ORT_ROUNDING, TFLITE
from esc2c.device.runner import run_qemu
from esc2c.errors import Esc2cError

needs_cmake = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
ORT_CHECK = "C == onnxruntime on the QDQ model (logits and every exposed tensor)"


def _emit_and_verify(model, out, **kw):
    r = emit(model, out, n_vectors=4, **kw)
    rep = verify(out, n=12)
    return r, rep


def _assert_every_tensor_equal(r, rep):
    assert rep.ok and not rep.not_run and not rep.failed, rep.text()
    ort_check = [c for c in rep.checks if c.name == ORT_CHECK]
    assert len(ort_check) == 1 and ort_check[0].ran and ort_check[0].ok, rep.text()
    n = len(r.graph.layer_ops())
    # every layer tensor was compared with onnxruntime's, and none differs
    assert f"0 differing elements in {n} tensors" in ort_check[0].detail, ort_check[0].detail
    assert f"{n} of {n} layer tensors" in ort_check[0].detail, ort_check[0].detail
    # the TFLite checks belong to the other contract and are not listed
    assert all("TFLite" not in c.name for c in rep.checks)


# int8 activations; uint8 ones with full-range weights (onnxruntime with session.x64quantprecision=1: exact
# u8u8 products on this CPU, see test_uint8_full_range_weights_are_noted) and with reduce_range (7-bit weights)
FAMILY = [("vgg", True, False, False), ("resnet", False, False, False), ("strip", True, True, True),
          ("vgg_asym", False, True, False)]


@needs_cmake
@pytest.mark.parametrize("kind,per_channel,uint8,reduce_range", FAMILY)
def test_onnxruntime_quantized_model_equals_onnxruntime_on_every_tensor(tmp_path, kind, per_channel, uint8,
                                                                          reduce_range):
    model = build(kind, tmp_path, per_channel=per_channel, uint8=uint8, reduce_range=reduce_range)
    r, rep = _emit_and_verify(model, tmp_path / "out")
    assert r.rounding == ORT_ROUNDING and "onnxruntime's quantization tool" in r.rounding_source
    meta = json.loads((tmp_path / "out" / "esc2c.json").read_text())
    assert (meta["contract"], meta["rounding"]) == (ONNXRUNTIME, ORT_ROUNDING)
    assert r.graph.contract == ONNXRUNTIME
    assert not (tmp_path / "out" / "model.tflite").exists()
    _assert_every_tensor_equal(r, rep)


@needs_cmake
@pytest.mark.slow
@pytest.mark.parametrize("seed", [2, 3, 4])
@pytest.mark.parametrize("kind", ["vgg", "vgg_asym", "resnet", "strip"])
@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("uint8", [False, True])
def test_onnxruntime_family_sweep(tmp_path, kind, per_channel, uint8, seed):
    model = build(kind, tmp_path, per_channel=per_channel, uint8=uint8, reduce_range=uint8 and seed == 2, seed=seed)
    _assert_every_tensor_equal(*_emit_and_verify(model, tmp_path / "out"))


@needs_cmake
def test_the_tflite_contract_stays_available(tmp_path):
    """--contract tflite on the same file: TFLite / CMSIS-NN arithmetic, the TFLite Micro reference path."""
    model = build("vgg", tmp_path)
    r = emit(model, tmp_path / "out", n_vectors=4, contract=TFLITE)
    assert r.rounding == "double" and r.graph.contract == TFLITE
    assert (tmp_path / "out" / "model.tflite").is_file()
    assert r.graph.ops[0].multiplier.dtype == np.int32
    rep = verify(tmp_path / "out", n=4)
    assert not rep.failed, rep.text()
    assert any(c.name.startswith("C logits vs QDQ ONNX") for c in rep.checks)
    assert all(c.name != ORT_CHECK for c in rep.checks)


def test_contract_choices_are_checked(tmp_path):
    model = build("strip", tmp_path)
    with pytest.raises(Esc2cError, match="tflite-contract choice"):
        emit(model, tmp_path / "a", contract=ONNXRUNTIME, rounding="single")
    with pytest.raises(Esc2cError, match="contract must be one of"):
        emit(model, tmp_path / "b", contract="tflm")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@needs_cmake
def test_a_project_is_verified_in_its_own_contract(tmp_path):
    model = build("strip", tmp_path)
    emit(model, tmp_path / "out", n_vectors=2)
    with pytest.raises(Esc2cError, match="onnxruntime contract"):
        verify(tmp_path / "out", n=2, rounding="double")


def test_uint8_full_range_weights_are_noted(tmp_path):
    """Without reduce_range onnxruntime's default u8s8 kernels on x86 CPUs without VNNI saturate 16-bit pair
    sums: emit says so and names the session option that makes onnxruntime exact."""
    r = emit(build("strip", tmp_path, uint8=True), tmp_path / "out", n_vectors=2)
    assert any("saturating 16-bit pairs" in n and "session.x64quantprecision=1" in n for n in r.notes), r.notes


@pytest.mark.skipif(any(shutil.which(t) is None for t in ("cmake", "arm-none-eabi-gcc", "qemu-system-arm")),
                    reason="needs cmake, gcc-arm-none-eabi and qemu-system-arm")
@pytest.mark.parametrize("kind", ["vgg", "resnet"])
def test_onnxruntime_contract_on_qemu_equals_the_host_on_every_layer(tmp_path, kind):
    """The float32 requantization, QLinearAdd's fused multiply-adds (resnet) and the float average pools (vgg)
    on the Cortex-M7's FPU give the host's bits (which equal onnxruntime's: the tests above)."""
    model = build(kind, tmp_path, per_channel=True)
    out = emit(model, tmp_path / "out", board="stm32f746zg", n_vectors=2).out
    report = run_qemu(out, vectors=8, debug_layers=True, echo=lambda s: None)
    assert (report.identical, report.vectors, report.layers_checked) == (8, 8, True)
