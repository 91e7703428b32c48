"""`esc2c emit` writes model.tflite and the TFLM firmware variant; `esc2c verify` runs TFLite Micro."""
from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest

import torch

from _compiler_models import build, export_float, quantize
from esc2c.compiler import tflm
from esc2c.compiler.driver import compile_model
from esc2c.compiler.emit import emit
from esc2c.compiler.lower_onnx import lower_to_onnx, run_int_onnx
from esc2c.compiler.tflite_writer import write_tflite
from esc2c.compiler.verify import VerifyContext, verify
from esc2c.contract import TFLITE


@pytest.fixture(scope="module")
def vgg_out(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tflite_emit")
    return emit(build("vgg", tmp), tmp / "out", n_vectors=4, contract=TFLITE).out


def test_emit_writes_tflite_and_tflm_variant(vgg_out):
    g = compile_model(vgg_out / "model.onnx")
    m = write_tflite(g)
    assert (vgg_out / "model.tflite").read_bytes() == m.data
    main = (vgg_out / "tflm" / "main.cc").read_text()
    adds = re.findall(r"resolver\.(Add\w+)\(\)", main)
    assert sorted(adds) == sorted(tflm.RESOLVER_ADD[c] for c in m.ops_used)
    assert f"MicroMutableOpResolver<kNumOps>" in main and f"kNumOps = {len(adds)};" in main
    data = (vgg_out / "tflm" / "model_data.cc").read_text()
    body = data.split("esc2c_tflm_model[kEsc2cTflmModelSize] = {")[1].split("};")[0]
    assert bytes(int(b, 16) for b in re.findall(r"0x([0-9a-f]{2})", body)) == m.data
    # the expected logits compiled in are the integer reference's in double rounding (TFLM's)
    x = np.load(vgg_out / "vectors" / "inputs.npy")
    np.testing.assert_array_equal(tflm.run_tflm(m.data, x), np.load(vgg_out / "vectors" / "outputs_double.npy"))
    arena = int(re.search(r'ESC2C_TFLM_ARENA_SIZE "(\d+)"', (vgg_out / "tflm" / "CMakeLists.txt").read_text())[1])
    assert tflm.arena_works(m.data, arena)


def test_tflm_cmake_without_tflm_path_says_what_to_do(vgg_out, tmp_path):
    r = subprocess.run(["cmake", "-S", str(vgg_out / "tflm"), "-B", str(tmp_path / "b")], capture_output=True,
                       text=True)
    assert r.returncode != 0
    msg = " ".join(r.stderr.split())
    assert "TFLM_PATH is not set" in msg and "create_tflm_tree.py" in msg
    r = subprocess.run(["cmake", "-S", str(vgg_out / "tflm"), "-B", str(tmp_path / "c"), f"-DTFLM_PATH={tmp_path}"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "is not a TFLite Micro tree" in " ".join(r.stderr.split())


def test_verify_runs_tflm_on_every_tensor(vgg_out):
    report = verify(vgg_out, n=6)
    check = next(c for c in report.checks if c.name.startswith("TFLite Micro"))
    assert check.ok, check.detail
    assert check.detail.startswith("0 differing elements in 11 layers")
    assert report.ok, report.text()


def test_tflm_check_names_the_first_differing_layer(vgg_out):
    g = compile_model(vgg_out / "model.onnx")
    x = np.random.default_rng(3).integers(-128, 128, (3,) + tuple(g.input.shape[1:])).astype(np.int8)
    ref = run_int_onnx(lower_to_onnx(g, "double"), x)
    layers = {op.output: ref[op.output].copy() for op in g.layer_ops()}
    dw = next(op for op in g.layer_ops() if op.kind == "depthwise_conv")
    layers[dw.output].reshape(3, -1)[1, 5] ^= 1  # one flipped bit in the "C" depthwise output
    logits = layers[g.outputs[0]].reshape(3, -1)
    r = tflm.check_tflm(VerifyContext(vgg_out, g, "double", x, logits, layers))
    assert not r.ok
    assert r.detail.startswith(f"first difference in layer '{dw.name}' (depthwise_conv), input 1, flat element 5")


def test_stale_tflite_fails_the_check(vgg_out, tmp_path):
    import shutil

    out = tmp_path / "stale"
    shutil.copytree(vgg_out, out)
    data = bytearray((out / "model.tflite").read_bytes())
    data[-1] ^= 0xFF
    (out / "model.tflite").write_bytes(bytes(data))
    g = compile_model(out / "model.onnx")
    x = np.zeros((1,) + tuple(g.input.shape[1:]), np.int8)
    r = tflm.check_tflm(VerifyContext(out, g, "double", x, np.zeros((1, 5), np.int8), {}))
    assert not r.ok and "model.tflite differs from the .tflite written from the project's model.onnx" in r.detail


class _PaddedAvgPool(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.pool = torch.nn.AvgPool2d(2, stride=2, padding=1, count_include_pad=False)

    def forward(self, x):
        return self.pool(torch.relu(self.conv(x)))


def test_model_without_exact_tflite_form_gets_no_variant(tmp_path):
    """A rescaling average pool over padded windows (counts 1, 2 and 4) has no exact TFLite form: emit
    writes tflm/UNSUPPORTED.txt naming the layer and no model.tflite; verify's check says NOT RUN."""
    torch.manual_seed(0)
    f = export_float(_PaddedAvgPool(), (1, 1, 6, 6), tmp_path / "p_float.onnx")
    g = compile_model(quantize(f, tmp_path / "p_int8.onnx", (1, 1, 6, 6)), fuse="none")  # the pool as its own op
    pool = next(op for op in g.ops if op.kind == "avg_pool")
    x = np.zeros((2,) + tuple(g.input.shape[1:]), np.int8)
    reason = tflm.emit_tflm(g, tmp_path / "out", x, np.zeros((2, g.output.size), np.int8))
    assert reason is not None and f"layer '{pool.name}'" in reason
    assert not (tmp_path / "out" / "model.tflite").exists()
    assert f"layer '{pool.name}'" in (tmp_path / "out" / "tflm" / "UNSUPPORTED.txt").read_text()
    r = tflm.check_tflm(VerifyContext(tmp_path / "out", g, "double", x, x[:, :1], {}))
    assert not r.ran and not r.ok and r.status == "--"
    assert r.detail.startswith("the model has no exact TFLite form") and pool.name in r.detail
