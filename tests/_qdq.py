"""The QDQ model in onnxruntime against the compiled C, layer by layer (shared by the fuzz and slow tests)."""
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort


def first_qdq_divergence(path: Path, g, x: np.ndarray, c: dict) -> tuple[str | None, int]:
    """The first layer (in execution order) whose int8 output differs from the QDQ model's tensor of the same
    name (onnxruntime, optimizations off, every QuantizeLinear output exposed), and by how many LSB; (None, 0)
    when none differs. Only the first departure is a property of a layer: the tflite contract rounds twice
    where the QDQ model rounds once in float, so a 1-LSB tie at one layer can grow through the next layers'
    gains (measured: a 1-LSB tie in a 1x1 conv, carried through an add and a global average pool, became 3 LSB
    on the logits behind a FC with multiplier 0.02 and int8 weights up to 127)."""
    m = onnx.load(str(path))
    qnames = [nd.output[0] for nd in m.graph.node if nd.op_type == "QuantizeLinear"]
    have = {o.name for o in m.graph.output}
    m.graph.output.extend(onnx.ValueInfoProto(name=q) for q in qnames if q not in have)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    t = g.input
    xf = (x.astype(np.float32) - t.zero_point) * np.float32(t.scale)
    if xf.ndim == 4:
        xf = xf.transpose(0, 3, 1, 2)
    outs = [sess.run(qnames, {sess.get_inputs()[0].name: np.ascontiguousarray(xi[None])}) for xi in xf]
    for op in g.layer_ops():
        if op.output not in qnames:
            continue
        k = qnames.index(op.output)
        q = np.stack([o[k] for o in outs])
        q = q.astype(np.int64) - (128 if q.dtype == np.uint8 else 0)   # uint8 models run as int8 here
        ours = c[op.output].astype(np.int64)
        if q.ndim == 5 and ours.ndim == 4:       # [N, 1, C, H, W] -> NHWC
            q = q[:, 0].transpose(0, 2, 3, 1)
        lsb = int(np.abs(q.reshape(len(x), -1) - ours.reshape(len(x), -1)).max())
        if lsb:
            return op.name, lsb
    return None, 0
