"""The importer: an INT8 QDQ ONNX file -> the integer IR in the ONNX layout (NCHW).

  onnx_model  load the file and check it (opset, one static input, quantized, supported ops), one clear
              line per problem
  fold_qdq    QuantizeLinear/DequantizeLinear pairs -> int8 tensors with their qparams, each float region
              -> one IR op

The importer is not a pass: passes rewrite a Graph (esc2c.compiler.passes); this builds it.
"""
from __future__ import annotations

from pathlib import Path

from esc2c.compiler.importer.fold_qdq import fold_qdq
from esc2c.compiler.importer.onnx_model import SUPPORTED_OPS, OnnxModel, check_model, load_model
from esc2c.compiler.ir import Graph

__all__ = ["SUPPORTED_OPS", "OnnxModel", "check_model", "fold_qdq", "load_ir", "load_model"]


def load_ir(path: str | Path) -> Graph:
    """ONNX file -> integer IR in the ONNX layout (before the layout/qparams/kernel/memory passes)."""
    return fold_qdq(load_model(path))
