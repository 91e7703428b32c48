"""Emission, host build, and bit-exact verification of ORT-quantized VGG- and ResNet-style models."""
import re
import shutil
import subprocess

import numpy as np
import onnx
import pytest

from _compiler_models import build, build_too_big
from esc2c.cli import main as cli_main
from esc2c.compiler.emit import cmsis_paths, emit
from esc2c.compiler.verify import verify
from esc2c.contract import TFLITE
from esc2c.errors import Esc2cError

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")


@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("emit")
    out = {}
    for kind, kw in [("vgg", {}), ("resnet", {}), ("vgg_asym", {}), ("vgg_pt_u8", {"per_channel": False, "uint8": True}),
                     ("strip", {})]:
        model = build(kind.replace("_pt_u8", ""), tmp, **kw)
        kernels = "cmsis" if kind in ("vgg_pt_u8", "strip") else "fast"  # both conv paths end to end
        # the tflite contract on models onnxruntime quantized: TFLite Micro and CMSIS-NN's arithmetic
        # (test_ort_contract.py: the same models under their default, the onnxruntime contract)
        out[kind] = emit(model, tmp / f"out_{kind}", n_vectors=4, kernels=kernels, contract=TFLITE)
    return out


@pytest.mark.parametrize("kind", ["vgg", "resnet"])
@pytest.mark.parametrize("rounding", ["double", "single"])
def test_verify_every_tensor_bit_exact(projects, kind, rounding):
    r = projects[kind]
    rep = verify(r.out, n=6, rounding=rounding)
    assert rep.ok, rep.text()
    assert "0 differing elements" in rep.checks[0].detail
    n_conv = sum(op.kind in ("conv", "depthwise_conv") for op in r.graph.ops)
    assert n_conv >= 6 and rep.elements_compared == 6 * sum(r.graph.tensors[op.output].size for op in r.graph.layer_ops())
    # the project's own ctest (vectors computed by onnxruntime at emit time) passes on the same build
    ct = subprocess.run(["ctest", "--test-dir", str(r.out / f"build-host-{rounding}")], capture_output=True, text=True)
    assert ct.returncode == 0, ct.stdout


@pytest.mark.parametrize("kind", ["vgg_asym", "vgg_pt_u8", "strip"])
def test_verify_asymmetric_pads_per_tensor_uint8_and_1xn(projects, kind):
    rep = verify(projects[kind].out, n=4)
    assert rep.ok, rep.text()
    g = projects[kind].graph
    if kind == "vgg_pt_u8":
        assert g.ops[-1].kernel == "arm_fully_connected_s8"
    elif kind == "vgg_asym":
        assert g.ops[0].attrs["pads"] == (1, 1, 0, 0)
    else:  # input height 1, output width 32: the wrapper takes arm_convolve_1_x_n_s8 (im2col scratch)
        first = g.ops[0]
        assert g.tensors[first.inputs[0]].shape == (1, 1, 32, 4) and first.scratch == 2 * 4 * 5 * 2


def test_checks_that_did_not_run_are_not_passed(projects, capsys, monkeypatch):
    """A check that could not run is listed as NOT RUN, not counted as passed; --strict fails on it."""
    from esc2c.compiler import verify as verify_mod

    def unavailable(ctx):
        return verify_mod.CheckResult.not_run("an optional reference", "its package is not installed")
    monkeypatch.setattr(verify_mod, "EXTRA_CHECKS", [*verify_mod.EXTRA_CHECKS, unavailable])
    out = str(projects["vgg"].out)
    rep = verify(out, n=2)  # a tflite-contract project: the extra checks are TFLite's
    m = len(rep.checks)
    assert rep.ok and [c.name for c in rep.not_run][-1] == "an optional reference"
    passed = sum(c.ran and c.ok for c in rep.checks)
    assert passed == m - len(rep.not_run)          # tensorflow absent: its comparison is not run either
    last = rep.text().splitlines()[-1]
    assert last.startswith(f"PASS ({passed} of {m} checks passed; not run: ") and "an optional reference" in last
    assert "  [--] an optional reference: NOT RUN: its package is not installed" in rep.text()
    assert not verify(out, n=2, strict=True).ok
    assert cli_main(["verify", out, "--n", "2"]) == 0
    capsys.readouterr()
    assert cli_main(["verify", out, "--n", "2", "--strict"]) == 1
    cap = capsys.readouterr()
    assert "FAIL (" in cap.out and "(--strict)" in cap.out
    assert "verification incomplete (--strict): did not run: " in cap.err
    assert "an optional reference (its package is not installed)" in cap.err


def test_verify_names_first_differing_layer(projects, tmp_path):
    src = projects["vgg"].out
    bad = tmp_path / "tampered"
    shutil.copytree(src, bad, ignore=shutil.ignore_patterns("build-*"))
    text = (bad / "weights.c").read_text()
    m = re.search(r"esc2c_w3\[\d+\] __attribute__\(\(aligned\(4\)\)\) = \{\n    (-?\d+)", text)
    old = int(m.group(1))
    new = 0 if old > 60 or old < -60 else 127
    text = text[:m.start(1)] + str(new) + text[m.end(1):]
    (bad / "weights.c").write_text(text)
    rep = verify(bad, n=3)
    assert not rep.ok
    layer3 = projects["vgg"].graph.layer_ops()[3].name
    assert f"layer '{layer3}'" in rep.checks[0].detail and "element" in rep.checks[0].detail
    assert cli_main(["verify", str(bad), "--n", "2"]) == 1


def test_emitted_project_contents(projects):
    out = projects["resnet"].out
    h = (out / "model.h").read_text()
    for name in ("ESC2C_INPUT_SIZE", "ESC2C_OUTPUT_SIZE", "ESC2C_ARENA_SIZE", "ESC2C_NUM_LAYERS", "ESC2C_INPUT_SCALE",
                 "ESC2C_INPUT_ZERO_POINT", "ESC2C_OUTPUT_SCALE", "ESC2C_OUTPUT_ZERO_POINT", "esc2c_set_layer_hook",
                 "esc2c_model_run", "esc2c_layer_names", "esc2c_layer_macs"):
        assert name in h
    assert f"#define ESC2C_INPUT_SIZE        {21 * 11}" in h
    weights = (out / "weights.c").read_text()
    assert "const int8_t esc2c_w0" in weights  # the 1-channel stem on the small-tap kernel: int8 weights
    assert "const int16_t esc2c_w1" in weights  # fast conv: int16 weights
    for f in ("model.onnx", "model.ir.json", "model_int.onnx", "vectors/inputs.npy", "runtime/src/esc2c_kernels.c",
              "host/main.c", "test_vectors.h", "CMakeLists.txt"):
        assert (out / f).is_file(), f
    onnx.checker.check_model(onnx.load(out / "model_int.onnx"))
    assert np.load(out / "vectors/inputs.npy").shape == (4, 21, 11, 1)


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
def test_target_compile_is_warning_free(projects, tmp_path):
    nn, core = cmsis_paths()
    ort_out = emit(projects["resnet"].out / "model.onnx", tmp_path / "ort", n_vectors=1).out  # onnxruntime contract
    for out, arithmetics in ((projects["resnet"].out, ([], ["-DCMSIS_NN_USE_SINGLE_ROUNDING"])),
                             (ort_out, (["-DESC2C_REQUANT_FLOAT"],))):
        flags = ["-mcpu=cortex-m7", "-mthumb", "-mfpu=fpv5-sp-d16", "-mfloat-abi=hard", "-O2", "-ffp-contract=off",
                 f"-I{out}", f"-I{out / 'runtime/include'}", f"-I{nn / 'Include'}", f"-I{core}"]
        for i, src in enumerate([out / "model.c", out / "weights.c", out / "runtime/src/esc2c_kernels.c",
                                 out / "runtime/src/esc2c_conv_s8_fast.c", out / "runtime/src/esc2c_conv_s8_small.c",
                                 out / "runtime/src/esc2c_ort_kernels.c"]):
            for arith in arithmetics:
                r = subprocess.run(["arm-none-eabi-gcc", *flags, *arith, "-Wall", "-Wextra", "-Werror", "-c", str(src),
                                    "-o", str(tmp_path / f"{i}.o")], capture_output=True, text=True)
                assert r.returncode == 0, r.stderr
    for i, src in enumerate(sorted((nn / "Source").rglob("*.c"))):
        r = subprocess.run(["arm-none-eabi-gcc", *flags, "-c", str(src), "-o", str(tmp_path / f"nn{i}.o")],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


def test_too_big_for_board_fails_before_writing(tmp_path):
    model = build_too_big(tmp_path)
    out = tmp_path / "out_big"
    with pytest.raises(Esc2cError) as e:
        emit(model, out, board="stm32f746zg", n_vectors=1)
    msg = str(e.value)
    assert "does not fit stm32f746zg" in msg and "flash needs" in msg and "by " in msg
    assert not out.exists()
    assert cli_main(["emit", str(model), "-o", str(out), "--board", "stm32f746zg"]) == 1
    assert not out.exists()


def test_cli_emit_with_board_copies_board_files(projects, tmp_path, capsys):
    model = projects["vgg"].out / "model.onnx"
    assert cli_main(["emit", str(model), "-o", str(tmp_path / "o"), "--board", "stm32f746zg", "--vectors", "2"]) == 0
    text = capsys.readouterr().out
    assert "arena" in text and "stm32f746zg: flash" in text
    assert (tmp_path / "o" / "board" / "board.cmake").is_file()
    assert cli_main(["verify", str(tmp_path / "missing")]) == 1
