"""Weight width per layer against the board's flash: the fast convolution's int16 weights where they fit,
its int8-weight entry point for the layers that give the least speed per byte saved when they do not
(passes/fit_flash)."""
import json
import shutil

import numpy as np
import pytest
import torch

from _compiler_models import build, export_float, quantize
from esc2c.compiler import ops
from esc2c.compiler.driver import compile_model
from esc2c.compiler.emit import board_limits, check_fit, emit
from esc2c.compiler import footprint
from esc2c.compiler.footprint import BOTH_WIDTHS_CODE_BYTES, CODE_BYTES, extra_code_bytes, vector_bytes
from esc2c.compiler.ops.conv_fast import FAST_CONV, FAST_CONV_W8, narrow_saving, packed_bytes
from esc2c.compiler.options import CompileOptions
from esc2c.compiler.passes.fit_flash import constant_bytes
from esc2c.contract import TFLITE
from esc2c.device.build import build_firmware
from esc2c.errors import Esc2cError


@pytest.fixture(scope="module")
def vgg(tmp_path_factory):
    return build("vgg", tmp_path_factory.mktemp("fit"))


def _extra(op):
    return ops.get(op.kind).wide_weight_bytes(op)


def _saving(op):
    return ops.get(op.kind).narrow_saving(op)


def test_no_budget_or_room_enough_changes_nothing(vgg):
    fast = compile_model(vgg, fuse="none")
    roomy = compile_model(vgg, options=CompileOptions(fuse="none", flash_budget=constant_bytes(fast)))
    assert [op.kernel for op in roomy.ops] == [op.kernel for op in fast.ops]
    assert not any("narrowed_for_flash" in op.attrs for op in roomy.ops)


def test_narrows_the_least_speed_per_byte_first_until_it_fits(vgg, monkeypatch):
    # the order alone: mixing widths costs no code here (test_mixing_widths_must_pay_for_its_code)
    monkeypatch.setattr(footprint, "BOTH_WIDTHS_CODE_BYTES", 0)
    fast = compile_model(vgg, fuse="none")
    wide = sorted((op for op in fast.ops if _saving(op)), key=lambda op: (op.macs / _saving(op), op.name))
    assert len(wide) >= 3
    assert all(_saving(op) == packed_bytes(op) // 2 for op in wide)  # int8 packing: half the int16 bytes
    budget = constant_bytes(fast) - _saving(wide[0]) - 1  # one layer is not enough: two must go
    g = compile_model(vgg, options=CompileOptions(fuse="none", flash_budget=budget))
    narrowed = [op.name for op in g.ops if op.attrs.get("narrowed_for_flash")]
    assert sorted(narrowed) == sorted([wide[0].name, wide[1].name])
    assert constant_bytes(g) <= budget
    assert constant_bytes(g) == constant_bytes(fast) - _saving(wide[0]) - _saving(wide[1])
    by_name = {op.name: op for op in g.ops}
    assert all(by_name[n].kernel == FAST_CONV_W8 and narrow_saving(by_name[n]) == 0 for n in narrowed)
    assert sum(op.kernel == FAST_CONV for op in g.ops) == len(wide) - 2
    assert sum(by_name[n].attrs["narrowed_for_flash"] for n in narrowed) == _saving(wide[0]) + _saving(wide[1])


def test_mixing_widths_must_pay_for_its_code(vgg):
    """A budget one byte short of the int16 constants: one layer on int8 weights would fit the constants, but
    mixing widths links the second dot loops (more code than this small model's layers save), so every layer
    narrows, and the firmware links the int8 loops alone."""
    fast = compile_model(vgg, fuse="none")
    wide = [op for op in fast.ops if _saving(op)]
    assert sum(_saving(op) for op in wide) < BOTH_WIDTHS_CODE_BYTES  # the premise
    g = compile_model(vgg, options=CompileOptions(fuse="none", flash_budget=constant_bytes(fast) - 1))
    assert sum(op.kernel == FAST_CONV_W8 for op in g.ops) == len(wide) and extra_code_bytes(g) == 0
    assert constant_bytes(g) <= constant_bytes(fast) - 1


def test_impossible_budget_narrows_every_layer(vgg):
    fast = compile_model(vgg, fuse="none")
    g = compile_model(vgg, options=CompileOptions(fuse="none", flash_budget=0))
    assert not any(op.kernel == FAST_CONV for op in g.ops)
    assert [op.kernel == FAST_CONV_W8 for op in g.ops] == [op.kernel == FAST_CONV for op in fast.ops]
    # what is left beyond plain int8 weights is the packing's zero padding of kernel rows and channel pairs
    assert constant_bytes(g) == g.weight_bytes() + sum(packed_bytes(op, True) - op.weights.size
                                                       for op in g.ops if op.kernel == FAST_CONV_W8)
    with pytest.raises(Esc2cError, match="flash budget must be >= 0"):
        CompileOptions(flash_budget=-1)


class _Wide(torch.nn.Module):
    """~0.8 M weights: int8 fits the STM32F746ZG's 1 MB flash, the fast kernel's int16 copy does not."""

    def __init__(self):
        super().__init__()
        chans = [1, 64, 128, 128, 128, 128, 128, 128]
        self.convs = torch.nn.ModuleList(torch.nn.Conv2d(a, b, 3, padding=1) for a, b in zip(chans, chans[1:]))
        self.gap = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(128, 4)

    def forward(self, x):
        for c in self.convs:
            x = torch.relu(c(x))
        return self.fc(torch.flatten(self.gap(x), 1))


def test_emit_for_a_board_narrows_layers_and_says_so(tmp_path):
    torch.manual_seed(0)
    q = quantize(export_float(_Wide(), (1, 1, 6, 6), tmp_path / "f.onnx"), tmp_path / "q.onnx", (1, 1, 6, 6), n_cal=4)
    all_fast = compile_model(q)
    budget = board_limits("stm32f746zg")[0] - CODE_BYTES - vector_bytes(all_fast.input.size, all_fast.output.size, 1)
    assert all_fast.weight_bytes() <= budget < constant_bytes(all_fast)  # the premise
    with pytest.raises(Esc2cError, match="does not fit stm32f746zg: flash needs"):
        check_fit(all_fast, "stm32f746zg")  # what emit --board refused before
    r = emit(q, tmp_path / "out", board="stm32f746zg", n_vectors=1, contract=TFLITE)
    narrowed = [op for op in r.graph.ops if op.attrs.get("narrowed_for_flash")]
    assert narrowed and any(op.kernel == FAST_CONV for op in r.graph.ops)  # some layers keep the fast kernel
    fit = json.loads((r.out / "esc2c.json").read_text())["fit"]
    assert fit["flash"] <= fit["flash_limit"]
    note = next(n for n in r.notes if n.startswith("flash:"))
    assert f"{len(narrowed)} convolution(s) read int8 weights" in note and narrowed[0].name in note
    code = (r.out / "model.c").read_text()
    assert "esc2c_conv_fast_s8(" in code and code.count("esc2c_conv_fast_s8_w8(") == len(narrowed)
    assert np.load(r.out / "vectors" / "outputs_double.npy").shape == (1, 4)
    if shutil.which("arm-none-eabi-gcc") and shutil.which("cmake"):  # the firmware really fits the board
        fw = build_firmware(r.out, "stm32f746zg")
        assert fw.flash_bytes <= fw.flash_limit
        # and emit's pre-build count (footprint.py) is an upper bound of the built image, not far above it
        assert fit["flash"] - 8 * 1024 <= fw.flash_bytes <= fit["flash"] and fw.ram_bytes <= fit["ram"]


def test_max_flash_narrows_for_emit_and_is_checked(vgg, tmp_path, monkeypatch):
    """`emit --max-flash` gives the constants that flash less the code and the test vectors; a limit inside the
    code is refused before anything is written."""
    monkeypatch.setattr(footprint, "BOTH_WIDTHS_CODE_BYTES", 0)  # so one layer is enough for this small model
    fast = compile_model(vgg, fuse="none")
    wide = sorted((op for op in fast.ops if _saving(op)), key=lambda op: (op.macs / _saving(op), op.name))
    limit = constant_bytes(fast) + CODE_BYTES + vector_bytes(fast.input.size, fast.output.size, 1) - 1  # one byte short: the first layer in the order narrows
    r = emit(vgg, tmp_path / "out", n_vectors=1, max_flash=limit, contract=TFLITE)  # compile_model's contract
    assert [op.name for op in r.graph.ops if op.attrs.get("narrowed_for_flash")] == [wide[0].name]
    assert any("the flash limit" in n for n in r.notes)
    with pytest.raises(Esc2cError, match="max_flash must be more than"):
        emit(vgg, tmp_path / "bad", max_flash=CODE_BYTES)
    assert not (tmp_path / "bad").exists()
