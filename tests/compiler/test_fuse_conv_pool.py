"""Band-wise conv + pool (esc2c/compiler/passes/fuse_conv_pool.py): bit-exact on every tensor in both rounding
modes and with both convolution kernels, the same .tflite and integer ONNX as unfused, a smaller arena
where the conv output dominates, and the same bits on the Cortex-M7 (QEMU) as on the host."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from _compiler_models import export_float, quantize
from esc2c.compiler.driver import compile_model
from esc2c.compiler.emit import emit
from esc2c.compiler.lower_onnx import lower_to_onnx, run_int_onnx
from esc2c.compiler.passes.fuse_conv_pool import KIND, schedule, unfuse, windows
from esc2c.compiler.tflite_writer import write_tflite
from esc2c.compiler.verify import verify
from esc2c.contract import TFLITE

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
torch.set_num_threads(1)


class PoolVGG(nn.Module):
    """6 convs, 3 followed by a pool: an overlapping padded max pool on an odd height, an average pool, a
    strided conv into a ceil-mode max pool on an odd height, a 3x1 and a 1x1 kernel, GAP, FC."""

    def __init__(self, n_cls: int = 5):
        super().__init__()
        r = nn.ReLU
        self.f = nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1), r(), nn.MaxPool2d((3, 2), stride=(2, 1), padding=(1, 0)),  # 23x17 -> 12x16
            nn.Conv2d(6, 8, 3), r(), nn.AvgPool2d(2),  # 10x14 -> 5x7
            nn.Conv2d(8, 8, 3, stride=2, padding=1), r(), nn.MaxPool2d(2, ceil_mode=True),  # 3x4 -> 2x2
            nn.Conv2d(8, 12, (3, 1), padding=(1, 0)), nn.ReLU6(),
            nn.Conv2d(12, 12, 1), r(),
            nn.Conv2d(12, 16, 3, padding=1), r(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, n_cls))

    def forward(self, x):
        return self.f(x)


class PoolResNet(nn.Module):
    """ResNet stem (conv, max pool 3x3 stride 2 pad 1: windows share rows), 2 basic blocks with residual
    adds, one of them strided with a 1x1 shortcut, a conv + 2x2 max pool, FC on the flattened map."""

    def __init__(self, n_cls: int = 4):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, 1, 1)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.a1, self.a2 = nn.Conv2d(8, 8, 3, 1, 1), nn.Conv2d(8, 8, 3, 1, 1)
        self.b1, self.b2 = nn.Conv2d(8, 12, 3, 2, 1), nn.Conv2d(12, 12, 3, 1, 1)
        self.bs = nn.Conv2d(8, 12, 1, 2)
        self.tail = nn.Conv2d(12, 12, 3, 1, 1)
        self.fc = nn.Linear(12 * 2 * 4, n_cls)

    def forward(self, x):
        x = self.pool(torch.relu(self.stem(x)))  # 29x45 -> 15x23
        x = torch.relu(x + self.a2(torch.relu(self.a1(x))))
        x = torch.relu(self.bs(x) + self.b2(torch.relu(self.b1(x))))  # 8x12
        x = nn.functional.max_pool2d(torch.relu(self.tail(x)), 3, 3)  # 8x12 -> 2x4: conv rows 6, 7 unused
        return self.fc(torch.flatten(x, 1))


MODELS = {"vgg": (PoolVGG, (1, 1, 23, 17)), "resnet": (PoolResNet, (1, 1, 29, 45))}


def _build(kind: str, tmp: Path) -> Path:
    cls, shape = MODELS[kind]
    torch.manual_seed(2)
    f = export_float(cls(), shape, tmp / f"{kind}_pool_float.onnx")
    return quantize(f, tmp / f"{kind}_pool_int8.onnx", shape)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuse")
    return {k: _build(k, tmp) for k in MODELS}


@pytest.fixture(scope="module")
def projects(models, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuse_out")
    return {(k, kernels): emit(m, tmp / f"{k}_{kernels}", n_vectors=2, kernels=kernels, fuse="all", contract=TFLITE)
            for k, m in models.items() for kernels in ("cmsis", "fast")}


def test_fusion_finds_the_pairs(models):
    g = compile_model(models["vgg"], fuse="all")
    fused = [op for op in g.ops if op.kind == KIND]
    assert [op.attrs["pool"]["kind"] for op in fused] == ["max_pool", "avg_pool", "max_pool"]
    assert not any(op.kind == "max_pool" for op in g.ops)
    r = compile_model(models["resnet"], fuse="all")
    stem = r.ops[0]
    assert stem.kind == KIND and stem.attrs["pool"]["kernel"] == (3, 3) and stem.attrs["band_rows"] == 3
    # windows share a row, which is moved, not recomputed: every conv row is computed exactly once
    sched = schedule(windows(stem.attrs["pool"], stem.attrs["mid"]["shape"][1], r.tensors[stem.output].shape[1]))
    assert [y for first, last in sched for y in range(first, last + 1)] == list(range(29))
    tail = r.ops[-3]
    assert tail.kind == KIND and tail.attrs["mid"]["shape"][1] == 8
    sched = schedule(windows(tail.attrs["pool"], 8, 2))
    assert sched == [(0, 2), (3, 5)]  # conv rows 6 and 7 feed no pooled row and are not computed
    assert sum(op.kind == KIND for op in r.ops) == 2
    assert not any(op.kind == KIND for op in compile_model(models["resnet"], fuse="none").ops)


@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("kernels", ["cmsis", "fast"])
@pytest.mark.parametrize("rounding", ["double", "single"])
def test_fused_verify_bit_exact_every_tensor(projects, kind, kernels, rounding):
    r = projects[(kind, kernels)]
    assert any(op.kind == KIND for op in r.graph.ops)
    rep = verify(r.out, n=3, rounding=rounding, n_features=0)
    assert rep.ok, rep.text()
    assert "0 differing elements" in rep.checks[0].detail
    # the TFLite Micro interpreter on the .tflite agrees on every layer tensor as well
    tflm = next(c for c in rep.checks if c.name.startswith("TFLite Micro"))
    assert "0 differing elements" in tflm.detail


@pytest.mark.parametrize("kind", list(MODELS))
def test_back_ends_see_the_two_original_ops(models, kind):
    fused, plain = compile_model(models[kind], fuse="all"), compile_model(models[kind], fuse="none")
    assert write_tflite(fused).data == write_tflite(plain).data  # CONV_2D + pool with the conv output between
    x = np.random.default_rng(0).integers(-128, 128, (2,) + tuple(plain.input.shape[1:])).astype(np.int8)
    a, b = run_int_onnx(lower_to_onnx(fused), x), run_int_onnx(lower_to_onnx(plain), x)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    u = unfuse(fused)
    assert [op.name for op in u.ops] == [op.name for op in plain.ops]
    assert [op.kernel for op in u.ops] == [op.kernel for op in plain.ops]
    assert sum(op.macs for op in fused.ops) == sum(op.macs for op in plain.ops)
    assert len(fused.layer_ops()) == len(plain.layer_ops()) - sum(op.kind == KIND for op in fused.ops)


def test_planner_fused_peak_below_unfused(models):
    for kind in MODELS:
        fused, plain = compile_model(models[kind], fuse="all"), compile_model(models[kind], fuse="none")
        auto = compile_model(models[kind])
        assert auto.arena_size <= plain.arena_size
        if kind == "resnet":  # the stem's 29x45x8 conv output dominated the unfused plan
            assert fused.plan_stats["peak_bytes"] < plain.plan_stats["peak_bytes"]
            assert auto.arena_size == fused.arena_size
            stem = plain.tensors[plain.ops[0].output].size
            assert plain.arena_size >= stem > fused.arena_size


def test_fused_output_may_overlap_consumed_input(models):
    g = compile_model(models["vgg"], fuse="all")
    lapped = [op for op in g.ops if op.kind == KIND and "overlap" in op.attrs]
    assert len(lapped) == 2  # the pooled output starts over input rows already consumed (verified above)
    for op in lapped:
        x, y = g.tensors[op.inputs[0]], g.tensors[op.output]
        assert y.offset < x.offset + x.size and x.offset < y.offset + y.size


@pytest.mark.skipif(any(shutil.which(t) is None for t in ("arm-none-eabi-gcc", "qemu-system-arm")),
                    reason="needs gcc-arm-none-eabi and qemu-system-arm")
def test_fused_model_on_qemu_is_bit_exact_with_host(models, tmp_path):
    from esc2c.device.runner import run_qemu

    out = emit(models["resnet"], tmp_path / "out", board="stm32f746zg", n_vectors=2, fuse="all",
               contract=TFLITE).out
    report = run_qemu(out, vectors=6, debug_layers=True, echo=lambda s: None)
    assert (report.identical, report.vectors, report.layers_checked) == (6, 6, True)


def _paper_export(arch: str, tmp: Path) -> Path:
    """esc2c's own QDQ export of a registry model at the paper's compression (width 0.17) and the
    UrbanSound8K log-mel shape 64 x 124 (calibrated on random data: the shapes are what matters here)."""
    from esc2c.features import FeatureSpec
    from esc2c.models.registry import build_model
    from esc2c.quant import export, qat

    torch.manual_seed(0)
    spec = FeatureSpec(sample_rate=16000, clip_seconds=4.0, n_fft=1024, win_length=1024, hop_length=512, n_mels=64)
    shape = (1,) + tuple(spec.shape)
    m = build_model(arch, 10, width=0.17, in_shape=shape, aux=False).eval()
    q = qat.calibrate(qat.quantize_model(m), [torch.randn(2, *shape) for _ in range(2)]).eval()
    export.export_onnx(q, tmp / f"{arch}.onnx", shape, feature_spec=spec)
    return tmp / f"{arch}.onnx"


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["vgg11", "resnet18"])
def test_paper_size_models_fused_bit_exact_and_within_tflm_goal(arch, tmp_path):
    from esc2c.compiler.tflm import smallest_arena

    model = _paper_export(arch, tmp_path)
    plain = compile_model(model, fuse="none")
    r = emit(model, tmp_path / "out", n_vectors=2)
    assert any(op.kind == KIND for op in r.graph.ops)
    assert r.arena_bytes < plain.arena_size and r.arena_bytes < plain.tensors[plain.ops[0].output].size
    for rounding in ("double", "single"):
        rep = verify(r.out, n=3, rounding=rounding, n_features=1)
        assert rep.ok, rep.text()
    tflm = smallest_arena((r.out / "model.tflite").read_bytes()).size
    assert r.arena_bytes <= 0.6 * tflm, (r.arena_bytes, tflm)


@pytest.mark.slow
@pytest.mark.skipif(any(shutil.which(t) is None for t in ("arm-none-eabi-gcc", "qemu-system-arm")),
                    reason="needs gcc-arm-none-eabi and qemu-system-arm")
def test_paper_size_fused_resnet18_on_qemu_every_layer(tmp_path):
    from esc2c.device.runner import run_qemu

    out = emit(_paper_export("resnet18", tmp_path), tmp_path / "out", board="stm32f746zg", n_vectors=2).out
    report = run_qemu(out, vectors=3, debug_layers=True, echo=lambda s: None)
    assert (report.identical, report.vectors, report.layers_checked) == (3, 3, True)
