"""QDQ ONNX export of a quantized model, built with ``onnx.helper`` straight from its integer program.

Graph form (opset 13, static shapes, batch 1 for deployment), names by program tensor ``T``:

* ``input`` (float) -> QuantizeLinear -> ``input_q`` (int8) -> DequantizeLinear -> ``input_dq``
* conv ``L``: int8 initializer ``L.weight`` -> DequantizeLinear (float32 scales ``L.weight_scale`` [C_out],
  int8 zero points 0, axis 0); int32 ``L.bias`` -> DequantizeLinear (scale float32(s_in * s_w), zero 0,
  axis 0); Conv -> [Relu] -> QuantizeLinear -> ``L_q`` -> DequantizeLinear -> ``L_dq``
* fully connected: the same with Gemm(transB=1) and a per-tensor weight scale
* MaxPool / AveragePool(count_include_pad=0) / GlobalAveragePool / Flatten between DQ and Q with the
  input's scale and zero point; Add (+ Relu) of two DQ outputs -> Q
* logits: QuantizeLinear -> ``logits_q`` (int8) -> DequantizeLinear -> graph output ``logits`` (float)

Every scale is the float32 value the integer simulation used, so a reader that recomputes multipliers with
:mod:`esc2c.quant.intparams` from these scales gets the same integers. Metadata: ``esc2c.feature_spec``
(FeatureSpec JSON), ``esc2c.class_names`` (JSON list), ``esc2c.rounding`` (``double`` | ``single``).
:func:`program_from_onnx` reads such a file back into an integer program.
"""
from __future__ import annotations

import json
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from esc2c.contract import DEFAULT_ROUNDING, META_CLASS_NAMES, META_FEATURE_SPEC, META_ROUNDING, ROUNDING_MODES
from esc2c.errors import Esc2cError
from esc2c.fsutil import atomic_write_bytes

OPSET = 13


def _q(name):
    return f"{name}_q"


def _dq(name, output):
    return "logits" if name == output else f"{name}_dq"


def build_onnx(program: dict, batch: int = 1, feature_spec_json: str | None = None,
               class_names: list[str] | None = None, rounding: str = DEFAULT_ROUNDING,
               graph_name: str = "esc2c") -> onnx.ModelProto:
    """The QDQ ONNX model of an integer program (see the module docstring for the graph form)."""
    if rounding not in ROUNDING_MODES:
        raise Esc2cError(f"rounding must be one of {ROUNDING_MODES}, got {rounding!r}")
    T = program["tensors"]
    out_name = program["output"]
    nodes, inits = [], []

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def qdq(tensor: str, src_float: str):
        s, zp = T[tensor]["scale"], T[tensor]["zero_point"]
        sn = init(f"{tensor}_scale", np.array(s, dtype=np.float32))
        zn = init(f"{tensor}_zero_point", np.array(zp, dtype=np.int8))
        nodes.append(helper.make_node("QuantizeLinear", [src_float, sn, zn], [_q(tensor)], name=f"{tensor}/quantize"))
        nodes.append(helper.make_node("DequantizeLinear", [_q(tensor), sn, zn], [_dq(tensor, out_name)],
                                      name=f"{tensor}/dequantize"))

    def weight_bias(L, s_in):
        n = L["name"]
        w_scale = np.asarray(L["w_scale"], dtype=np.float32)
        per_axis = w_scale.ndim == 1
        init(f"{n}.weight", L["weight"].astype(np.int8))
        init(f"{n}.weight_scale", w_scale)
        init(f"{n}.weight_zero_point", np.zeros(w_scale.shape, dtype=np.int8))
        attrs = {"axis": 0} if per_axis else {}
        nodes.append(helper.make_node("DequantizeLinear", [f"{n}.weight", f"{n}.weight_scale",
                                                           f"{n}.weight_zero_point"], [f"{n}.weight_dq"],
                                      name=f"{n}.weight/dequantize", **attrs))
        b_scale = (np.float32(s_in) * w_scale).astype(np.float32)
        init(f"{n}.bias", L["bias"].astype(np.int32))
        init(f"{n}.bias_scale", b_scale)
        init(f"{n}.bias_zero_point", np.zeros(b_scale.shape, dtype=np.int32))
        nodes.append(helper.make_node("DequantizeLinear", [f"{n}.bias", f"{n}.bias_scale", f"{n}.bias_zero_point"],
                                      [f"{n}.bias_dq"], name=f"{n}.bias/dequantize", **attrs))
        return f"{n}.weight_dq", f"{n}.bias_dq"

    def act(L, y):
        if L.get("act") == "relu":
            nodes.append(helper.make_node("Relu", [y], [f"{L['name']}_relu"], name=f"{L['name']}/relu"))
            return f"{L['name']}_relu"
        if L.get("act") not in (None,):
            raise Esc2cError(f"layer {L['name']}: fused activation {L['act']!r} cannot be exported")
        return y

    inp = program["input"]
    c, h, w = T[inp]["shape"]
    qdq(inp, "input")
    for L in program["layers"]:
        op, n, ins = L["op"], L["name"], L["inputs"]
        x = _dq(ins[0], out_name)
        y = f"{n}_f"
        if op == "conv":
            wq, bq = weight_bias(L, T[ins[0]]["scale"])
            kh, kw = L["weight"].shape[2:]
            nodes.append(helper.make_node("Conv", [x, wq, bq], [y], name=n, kernel_shape=[int(kh), int(kw)],
                                          strides=[int(v) for v in L["stride"]],
                                          pads=[int(L["pad"][0]), int(L["pad"][1]), int(L["pad"][0]), int(L["pad"][1])],
                                          group=int(L["groups"]), dilations=[1, 1]))
            y = act(L, y)
        elif op == "fc":
            wq, bq = weight_bias(L, T[ins[0]]["scale"])
            nodes.append(helper.make_node("Gemm", [x, wq, bq], [y], name=n, transB=1))
            y = act(L, y)
        elif op == "maxpool":
            nodes.append(helper.make_node("MaxPool", [x], [y], name=n, kernel_shape=list(L["kernel"]),
                                          strides=list(L["stride"]),
                                          pads=[L["pad"][0], L["pad"][1], L["pad"][0], L["pad"][1]]))
        elif op == "avgpool" and L.get("global"):
            nodes.append(helper.make_node("GlobalAveragePool", [x], [y], name=n))
        elif op == "avgpool":
            nodes.append(helper.make_node("AveragePool", [x], [y], name=n, kernel_shape=list(L["kernel"]),
                                          strides=list(L["stride"]), count_include_pad=0,
                                          pads=[L["pad"][0], L["pad"][1], L["pad"][0], L["pad"][1]]))
        elif op == "flatten":
            nodes.append(helper.make_node("Flatten", [x], [y], name=n, axis=1))
        elif op == "add":
            nodes.append(helper.make_node("Add", [x, _dq(ins[1], out_name)], [y], name=n))
            y = act(L, y)
        else:
            raise Esc2cError(f"layer {n}: op {op!r} cannot be exported")
        qdq(L["output"], y)

    n_cls = T[out_name]["shape"][0]
    graph = helper.make_graph(
        nodes, graph_name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, c, h, w])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, n_cls])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="esc2c")
    model.ir_version = 8
    meta = {META_ROUNDING: rounding}
    if feature_spec_json is not None:
        meta[META_FEATURE_SPEC] = feature_spec_json
    if class_names is not None:
        meta[META_CLASS_NAMES] = json.dumps(list(class_names))
    helper.set_model_props(model, meta)
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model


def export_onnx(qmodel, path: str | os.PathLike, in_shape, feature_spec=None, class_names=None,
                rounding: str = DEFAULT_ROUNDING, batch: int = 1) -> onnx.ModelProto:
    """Write ``qmodel`` (a calibrated :class:`~esc2c.quant.qat.QATNet`) as QDQ ONNX to ``path`` atomically.
    ``feature_spec`` is a FeatureSpec (its ``to_json()`` is stored) or a JSON string."""
    program = qmodel.integer_program(tuple(in_shape))
    spec_json = None
    if feature_spec is not None:
        spec_json = feature_spec if isinstance(feature_spec, str) else feature_spec.to_json()
    model = build_onnx(program, batch=batch, feature_spec_json=spec_json, class_names=class_names,
                       rounding=rounding, graph_name=getattr(qmodel, "arch", "esc2c"))
    atomic_write_bytes(path, model.SerializeToString())
    return model


def ort_session(model, threads: int = 1):
    """onnxruntime session for a QDQ model with exact int8 x int8 kernels (``session.qdqisint8allowed``)."""

    so = ort.SessionOptions()
    so.add_session_config_entry("session.qdqisint8allowed", "1")
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


# ------------------------------------------------------------------------------------------------ read back
def program_from_onnx(model: onnx.ModelProto) -> dict:
    """Read an integer program back from a QDQ model written by :func:`build_onnx` (for round-trip checks:
    the int8 weights, int32 biases, float32 scales and zero points are those of the file)."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    tensors: dict[str, dict] = {}
    layers: list[dict] = []
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)}

    def base(dq_out: str) -> str:
        dq = producers[dq_out]
        if dq.op_type != "DequantizeLinear":
            raise Esc2cError(f"node {dq.name}: expected DequantizeLinear feeding an op, got {dq.op_type}")
        return dq.input[0][:-2]

    def weight(name_dq: str):
        dq = producers[name_dq]
        return inits[dq.input[0]], inits[dq.input[1]]

    for node in model.graph.node:
        if node.op_type != "QuantizeLinear":
            continue
        t = node.output[0][:-2]
        s, zp = inits[node.input[1]], inits[node.input[2]]
        tensors[t] = {"scale": np.float32(s), "zero_point": int(zp), "shape": shapes[node.output[0]][1:]}
        src = producers.get(node.input[0])
        if src is None:
            continue  # graph input
        act = None
        if src.op_type == "Relu":
            act, src = "relu", producers[src.input[0]]
        L = {"name": src.name, "output": t, "inputs": [base(i) for i in src.input
                                                       if producers.get(i) is not None
                                                       and producers[i].input[0] not in inits]}
        attrs = {a.name: helper.get_attribute_value(a) for a in src.attribute}
        if src.op_type in ("Conv", "Gemm"):
            w, w_scale = weight(src.input[1])
            b, _ = weight(src.input[2])
            L.update(op="conv" if src.op_type == "Conv" else "fc", weight=w, bias=b, act=act,
                     w_scale=w_scale.astype(np.float32) if src.op_type == "Conv" else np.float32(w_scale))
            if src.op_type == "Conv":
                L.update(stride=list(attrs.get("strides", [1, 1])), pad=list(attrs.get("pads", [0, 0, 0, 0])[:2]),
                         groups=int(attrs.get("group", 1)))
        elif src.op_type in ("MaxPool", "AveragePool"):
            L.update(op="maxpool" if src.op_type == "MaxPool" else "avgpool", kernel=list(attrs["kernel_shape"]),
                     stride=list(attrs.get("strides", [1, 1])), pad=list(attrs.get("pads", [0, 0, 0, 0])[:2]))
        elif src.op_type == "GlobalAveragePool":
            shp = tensors[L["inputs"][0]]["shape"]
            L.update(op="avgpool", kernel=list(shp[1:]), stride=[1, 1], pad=[0, 0], **{"global": True})
        elif src.op_type == "Flatten":
            L.update(op="flatten")
        elif src.op_type == "Add":
            L.update(op="add", act=act)
        else:
            raise Esc2cError(f"node {src.name}: op {src.op_type} is not part of the esc2c QDQ form")
        layers.append(L)
    return {"input": "input", "output": layers[-1]["output"], "tensors": tensors, "layers": layers}
