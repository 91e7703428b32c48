"""Load an INT8 QDQ ONNX model and check it (the first half of the importer; fold_qdq is the second).

Checks, each failing with one clear line (Esc2cError) that names the file/node/input:
  * the file loads (not corrupt) and passes onnx.checker;
  * the default-domain opset is one the compiler knows (13 and later: per-axis QuantizeLinear);
  * every graph input has static dimensions;
  * the model is quantized (has QuantizeLinear/DequantizeLinear), else it says how to quantize it;
  * every node's op is supported, else it names the node, the op and the supported list.
The folding itself lives in importer/fold_qdq.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from esc2c.compiler import ops
from esc2c.contract import META_ACTIVATIONS, META_PRODUCER
from esc2c.errors import Esc2cError

# the quantization and plumbing ops, then every ONNX op some op kind imports (esc2c/compiler/ops/)
SUPPORTED_OPS = tuple(dict.fromkeys(("QuantizeLinear", "DequantizeLinear", *ops.onnx_ops(), "Identity", "Constant")))
MIN_OPSET = 13

FLOAT_MODEL_HINT = (
    "it is a float model (no QuantizeLinear/DequantizeLinear nodes); emit needs an INT8 QDQ model: "
    "produce one with `esc2c compress` (INT8 QAT export), or quantize this one with "
    "onnxruntime.quantization.quantize_static(..., quant_format=QuantFormat.QDQ, "
    "activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)"
)


@dataclass
class OnnxModel:
    """A checked ONNX graph with the lookups the folding pass needs."""
    path: str
    model: onnx.ModelProto
    consts: dict[str, np.ndarray]
    shapes: dict[str, tuple[int, ...]]
    producer: dict[str, onnx.NodeProto]
    consumers: dict[str, list[onnx.NodeProto]]
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def graph(self) -> onnx.GraphProto:
        return self.model.graph

    def node_name(self, node: onnx.NodeProto) -> str:
        return node.name or f"{node.op_type}({node.output[0]})"

    def attr(self, node: onnx.NodeProto, name: str, default=None):
        for a in node.attribute:
            if a.name == name:
                return onnx.helper.get_attribute_value(a)
        return default


def load_model(path: str | Path) -> OnnxModel:
    path = Path(path)
    if not path.is_file():
        raise Esc2cError(f"{path}: no such file")
    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf DecodeError and friends
        raise Esc2cError(f"{path}: not a readable ONNX file ({type(e).__name__}: {str(e)[:120]})") from None
    if not model.graph.node:
        raise Esc2cError(f"{path}: not a readable ONNX file (the graph has no nodes)")
    try:
        onnx.checker.check_model(model)
    except Exception as e:  # noqa: BLE001 - ValidationError, and decode errors of corrupt strings
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise Esc2cError(f"{path}: ONNX checker rejected the model: {first}") from None
    return check_model(model, str(path))


def check_model(model: onnx.ModelProto, path: str = "<model>") -> OnnxModel:
    opset = None
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            opset = imp.version
    if opset is None or opset < MIN_OPSET:
        raise Esc2cError(f"{path}: opset {opset} is not supported (need opset {MIN_OPSET} or later; "
                         f"re-export with opset_version>={MIN_OPSET})")
    g = model.graph
    init_names = {i.name for i in g.initializer}
    real_inputs = [i for i in g.input if i.name not in init_names]
    if len(real_inputs) != 1:
        raise Esc2cError(f"{path}: the model must have exactly one input, it has {len(real_inputs)}")
    if len(g.output) != 1:
        raise Esc2cError(f"{path}: the model must have exactly one output (the logits), it has {len(g.output)}")
    for inp in real_inputs:
        tt = inp.type.tensor_type
        if not tt.HasField("shape"):
            raise Esc2cError(f"{path}: input '{inp.name}' has no shape; export it with a static shape")
        for i, d in enumerate(tt.shape.dim):
            if not d.HasField("dim_value") or d.dim_value <= 0:
                what = d.dim_param or "?"
                raise Esc2cError(f"{path}: input '{inp.name}' has a dynamic dimension {i} ('{what}'); "
                                 f"export it with a static shape (batch 1)")
    ops = {n.op_type for n in g.node}
    if not ops & {"QuantizeLinear", "DequantizeLinear"}:
        raise Esc2cError(f"{path}: {FLOAT_MODEL_HINT}")
    for n in g.node:
        if n.domain not in ("", "ai.onnx") or n.op_type not in SUPPORTED_OPS:
            dom = f"{n.domain}." if n.domain not in ("", "ai.onnx") else ""
            raise Esc2cError(f"{path}: node '{n.name or n.output[0]}' uses unsupported op {dom}{n.op_type}; "
                             f"supported: {', '.join(SUPPORTED_OPS)}")

    consts = {i.name: _tensor(i, f"{path}: initializer '{i.name}'") for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = _tensor(a.t, f"{path}: node '{n.name or n.output[0]}' (Constant)")
                elif a.name in ("value_float", "value_int", "value_floats", "value_ints"):
                    consts[n.output[0]] = np.asarray(onnx.helper.get_attribute_value(a))
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception as e:
        raise Esc2cError(f"{path}: shape inference failed: {str(e)[:200]}") from None
    shapes: dict[str, tuple[int, ...]] = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        tt = vi.type.tensor_type
        if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            shapes[vi.name] = tuple(int(d.dim_value) for d in tt.shape.dim)
    for name, arr in consts.items():
        shapes[name] = tuple(arr.shape)
    producer, consumers = {}, {}
    for n in g.node:
        for o in n.output:
            producer[o] = n
        for i in n.input:
            if i:
                consumers.setdefault(i, []).append(n)
    meta = {p.key: p.value for p in model.metadata_props}
    if model.producer_name and META_PRODUCER not in meta:  # which tool wrote the file (contract choice)
        meta[META_PRODUCER] = model.producer_name
    if any(n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in consts
           and consts[n.input[2]].dtype == np.uint8 for n in g.node):
        meta[META_ACTIVATIONS] = "uint8"
    return OnnxModel(path, model, consts, shapes, producer, consumers, meta)


MAX_CONST_ELEMENTS = 1 << 26     # far beyond any model for a 1 MB flash part


def _tensor(t: onnx.TensorProto, where: str) -> np.ndarray:
    """A constant as numpy, or one line saying why it is malformed (huge or negative dims, a data length
    that does not match them, an unknown data type)."""
    dims = list(t.dims)
    if any(d < 0 for d in dims) or int(np.prod([max(d, 0) for d in dims], dtype=np.float64)) > MAX_CONST_ELEMENTS:
        raise Esc2cError(f"{where} has impossible dimensions {dims}")
    try:
        return numpy_helper.to_array(t)
    except Exception as e:  # noqa: BLE001 - data that does not match dims or data_type
        raise Esc2cError(f"{where} is malformed (dims {dims}, data type {t.data_type}): "
                         f"{type(e).__name__}: {str(e)[:120]}") from None
