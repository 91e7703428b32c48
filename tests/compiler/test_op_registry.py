"""The op registry (esc2c/compiler/ops/): one module per IR op kind, and the generic compiler asks it instead
of branching on kinds or kernel names (a source scan keeps that rule)."""
import ast
import re
from pathlib import Path

import pytest

from esc2c.compiler import ops
from esc2c.compiler.ops.base import OpKind

ROOT = Path(__file__).resolve().parents[2]
COMPILER = ROOT / "esc2c" / "compiler"
GENERIC = [COMPILER / p for p in ("passes/kernel_select.py", "passes/memplan.py", "passes/qparams.py",
                                  "passes/layout_nhwc.py", "passes/fuse_activation.py", "emit.py", "lower_onnx.py",
                                  "tflite_writer.py", "costmodel.py", "importer/fold_qdq.py",
                                  "importer/onnx_model.py")] + [ROOT / "templates" / "model.c.j2"]
BRANCH = [
    re.compile(r"\bop\.kind\s*(==|!=|\bin\b|\bnot\s+in\b)"),  # op.kind == "conv", op.kind in (...)
    re.compile(r"\.kind\s*(==|!=)\s*[\"'A-Z]"),  # prod.kind == "max_pool", u.kind != KIND
    re.compile(r"\.kind\s+(not\s+)?in\s*[(\[{\"'A-Z]"),
    re.compile(r"\bkernel\s*(==|!=)"),  # op.kernel == FAST_CONV, L.kernel == "arm_..."
    re.compile(r"\bkernel\s+(not\s+)?in\s*[(\[{A-Z]"),
    re.compile(r"[\"'](arm|esc2c)_\w+_s8[\"']"),  # a kernel name as a string literal
]
# esc2c.contract: the shared names (the contracts an op kind supports), no compiler code
ALLOWED_IMPORTS = ("esc2c.compiler.ir", "esc2c.compiler.ops", "esc2c.quant", "esc2c.errors", "esc2c.contract", "numpy",
                   "__future__", "dataclasses", "math")


def test_generic_modules_do_not_branch_on_kinds_or_kernels():
    hits = []
    for path in GENERIC:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if any(p.search(line) for p in BRANCH):
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not hits, "kind/kernel branches in generic code (ask esc2c.compiler.ops.get(op.kind)):\n" + "\n".join(hits)


def test_scan_catches_a_branch():
    assert any(p.search('        if op.kind == "conv":') for p in BRANCH)
    assert any(p.search('{%- if L.kernel == "arm_max_pool_s8" %}') for p in BRANCH)
    assert any(p.search("    elif prod.kind in FUSABLE:") for p in BRANCH)
    assert not any(p.search("        kind = ops.get(op.kind)") for p in BRANCH)


def test_every_kind_is_its_own_module_importing_no_generic_code():
    mods = {p.stem for p in (COMPILER / "ops").glob("*.py")}
    assert set(ops.REGISTRY) <= mods
    for kind, op in ops.REGISTRY.items():
        assert isinstance(op, OpKind) and op.kind == kind
        assert type(op).__module__ == f"esc2c.compiler.ops.{kind}"
    for path in (COMPILER / "ops").glob("*.py"):
        if path.stem == "__init__":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert name.startswith(ALLOWED_IMPORTS), f"{path.name} imports {name}"
            if isinstance(node, ast.ImportFrom) and node.module == "esc2c.compiler.ops":  # modules, not the registry
                assert all(a.name in mods for a in node.names), f"{path.name} imports the registry"


def test_the_documented_kinds_are_registered():
    for kind in ("conv", "depthwise_conv", "fully_connected", "max_pool", "avg_pool", "add", "requantize",
                 "reshape", "relu", "conv_pool"):
        assert ops.get(kind).kind == kind
    assert ops.OP_KINDS == tuple(ops.REGISTRY)


def test_unknown_kind_names_it_and_the_known_ones():
    with pytest.raises(ValueError) as e:
        ops.get("softmax")
    assert "'softmax'" in str(e.value) and all(k in str(e.value) for k in ops.REGISTRY)


def test_onnx_anchors_are_claimed_once_and_supported():
    from esc2c.compiler.importer import SUPPORTED_OPS

    for kind in ops.REGISTRY.values():
        for t in kind.onnx_anchors + kind.onnx_views:
            assert t in SUPPORTED_OPS
            assert ops.onnx_anchor(t) in (kind, None) and (ops.onnx_anchor(t) is kind or t in kind.onnx_views)
    assert ops.onnx_anchor("Conv") is ops.get("conv") and ops.onnx_anchor("Softmax") is None
