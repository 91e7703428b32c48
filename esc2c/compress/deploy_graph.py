"""A float ESCNet as the compiler sees it: quantized quickly (BN folded, ranges calibrated on a few batches),
exported to QDQ ONNX and run through the compiler's passes, so its deployed shapes, kernels, weight bytes and
memory plan can be read without training or emitting C (for budgets and cost estimates)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from esc2c.compiler.driver import compile_model
from esc2c.compiler.ir import Graph
from esc2c.compiler.options import DEFAULT_KERNELS, CompileOptions
from esc2c.models.blocks import ESCNet
from esc2c.quant import export, qat


def calibration_inputs(in_shape, n: int = 16, seed: int = 0) -> torch.Tensor:
    """Standard-normal stand-ins for normalised log-mel features (only the shapes matter downstream)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n,) + tuple(in_shape), generator=g)


@torch.no_grad()
def quantized_onnx(model: ESCNet, in_shape, path: str | Path, calib: torch.Tensor | None = None) -> Path:
    """``model`` (float, aux heads ignored) -> calibrated INT8 QDQ ONNX at ``path``."""
    q = qat.quantize_model(model)
    q.drop_aux_heads()
    x = calib if calib is not None else calibration_inputs(in_shape)
    qat.calibrate(q, [x])
    export.export_onnx(q.eval(), path, tuple(in_shape))
    return Path(path)


def compile_float(model: ESCNet, in_shape, kernels: str = DEFAULT_KERNELS, calib: torch.Tensor | None = None,
                  fuse: str = "auto", flash_budget: int | None = None) -> Graph:
    """The compiled IR (every pass applied: kernels chosen, arena planned) of a float ESCNet; with
    ``flash_budget`` (bytes for the constants) fast convolutions read int8 weights where their int16 ones
    do not fit, as ``esc2c emit`` chooses for a board (passes/fit_flash.py)."""
    with tempfile.TemporaryDirectory(prefix="esc2c-deploy-") as tmp:
        p = quantized_onnx(model, in_shape, Path(tmp) / "model.onnx", calib)
        return compile_model(p, options=CompileOptions(kernels=kernels, fuse=fuse, flash_budget=flash_budget))

