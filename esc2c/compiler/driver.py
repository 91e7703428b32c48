"""compile_model: an INT8 QDQ ONNX file -> the IR every back end consumes (importer, then every pass).

Emission (emit.py) calls it once; verification reads the IR emit wrote (project.py) instead of compiling
again, so nothing downstream depends on this module but the commands that start from an ONNX file."""
from __future__ import annotations

from pathlib import Path

from esc2c.compiler.importer import load_ir
from esc2c.compiler.ir import Graph
from esc2c.compiler.options import CompileOptions
from esc2c.compiler.passes import run_passes


def compile_model(onnx_path: str | Path, kernels: str | None = None, fuse: str | None = None,
                  options: CompileOptions | None = None) -> Graph:
    """ONNX file -> IR with every pass applied (import, fusion, layout, qparams, kernels, memory).
    ``kernels``: "fast" (the project's convolution kernel) or "cmsis" (CMSIS-NN's for every convolution);
    ``fuse``: "auto", "all" or "none" (see CompileOptions)."""
    return compile_ir(load_ir(onnx_path), kernels, fuse, options)


def compile_ir(g: Graph, kernels: str | None = None, fuse: str | None = None,
               options: CompileOptions | None = None) -> Graph:
    """The imported IR (importer.load_ir: its metadata tells which contract suits it) -> every pass."""
    overrides = {k: v for k, v in (("kernels", kernels), ("fuse", fuse)) if v is not None}
    return run_passes(g, options, **overrides)
