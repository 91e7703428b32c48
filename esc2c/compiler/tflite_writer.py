""".tflite flatbuffer of the compiled IR, carrying the same integer arithmetic (DESIGN.md section 3, path 2).

TFLite / TFLite Micro derive their integer parameters themselves from the float32 scales in the
flatbuffer (QuantizeMultiplier of s_in * s_w[c] / s_out in double, the fused activation's clamp from the
output's scale and zero point). The writer stores the IR's float32 scales, int32 biases and int8 weights,
then checks for every layer that what TFLite will derive is exactly what the IR carries (multipliers,
shifts, clamps, paddings); a layer that cannot be expressed exactly is an :class:`Esc2cError` naming it.

Mapping (NHWC; TFLite's layouts are the IR's; each op kind writes itself, ``OpKind.lower_tflite`` in
esc2c/compiler/ops/, with the _Writer's helpers below):
  conv             CONV_2D, weights OHWI per-channel (quantized_dimension 0), bias int32 (scale s_in*s_w)
  depthwise_conv   DEPTHWISE_CONV_2D, weights 1HWC per-channel (quantized_dimension 3)
  fully_connected  RESHAPE to 1x1xK, CONV_2D 1x1 (weights per channel), RESHAPE back: TensorFlow's reference
                   FULLY_CONNECTED rounds differently from TFLite Micro's; their CONV_2D kernels agree
  max_pool         MAX_POOL_2D
  avg_pool         AVERAGE_POOL_2D when input and output share qparams (sum of raw values, rounded
                   division by the count of valid elements: the IR's CMSIS-NN arithmetic); with its own
                   output scale and no padding, a DEPTHWISE_CONV_2D of ones whose float32 weight scale
                   is chosen so that the layer's integer function equals the IR's on every possible sum
  add              ADD (TFLite's int8 ADD is the IR's add contract)
  requantize       QUANTIZE int8 -> int8
  reshape          RESHAPE
Paddings: TFLite has SAME and VALID only. Explicit pads that are neither are written as a PAD op (zero
point: exact for convolutions) or a PADV2 with -128 (exact for max pools) before a VALID layer, unless
``pad_ops=False``; an average pool whose pads are not SAME's cannot be expressed (its counts would differ).
Fused activations: NONE, RELU, RELU6 or RELU_N1_TO_1, whichever gives the IR's (act_min, act_max).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import flatbuffers
import numpy as np

from esc2c.compiler import ops
from esc2c.compiler.ir import Graph, Op
from esc2c.compiler.ops.base import end_pads, f32
from esc2c.compiler.passes.fuse_conv_pool import unfuse
from esc2c.errors import Esc2cError
from esc2c.fsutil import atomic_write_bytes
from esc2c.quant import intparams


def schema():
    """The TFLite flatbuffer schema module (object API) shipped with the tflite-micro package."""
    try:
        # lazy: the generated schema module is large; only .tflite writing needs it
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb
    except ImportError:
        raise Esc2cError("the tflite-micro package is not installed: pip install tflite-micro") from None
    return fb


FILE_IDENTIFIER = b"TFL3"
SCHEMA_VERSION = 3


@dataclass
class TfliteModel:
    """A written .tflite: its bytes, the TFLite tensor index of every IR tensor, the builtin ops used."""
    data: bytes
    tensor_index: dict[str, int]
    ops_used: list[str]
    inserted_pads: list[str] = field(default_factory=list)  # IR layers preceded by a PAD/PADV2 op
    pools_as_depthwise: list[str] = field(default_factory=list)  # rescaling average pools

    def save(self, path: str | Path) -> Path:

        atomic_write_bytes(path, self.data)
        return Path(path)


# ---------------------------------------------------------------- padding and activation
def _out_size(padding: str, n: int, k: int, s: int) -> int:
    return (n + s - 1) // s if padding == "SAME" else (n - k + s) // s


def tflite_padding(in_hw, out_hw, kernel, stride, pads) -> str | None:
    """'VALID' or 'SAME' when TFLite's rule gives exactly this output size and these leading pads."""
    t, l, _, _ = end_pads(in_hw, out_hw, kernel, stride, pads)
    for padding in ("VALID", "SAME"):
        ok = True
        for d, lead in ((0, t), (1, l)):
            n, k, s = in_hw[d], kernel[d], stride[d]
            o = _out_size(padding, n, k, s)
            total = max((o - 1) * s + k - n, 0) if padding == "SAME" else 0
            if o != out_hw[d] or total // 2 != lead:
                ok = False
        if ok:
            return padding
    return None


def _tflite_round(x: np.float32) -> int:
    return int(intparams.round_half_away(float(x)))


def activation_ranges(scale: float, zero_point: int) -> dict[str, tuple[int, int]]:
    """The clamp TFLite derives for each fused activation (CalculateActivationRangeQuantized: float32)."""
    s = np.float32(scale)

    def q(f: float) -> int:
        return int(zero_point) + _tflite_round(np.float32(f) / s)

    lo, hi = intparams.INT8_MIN, intparams.INT8_MAX
    return {"NONE": (lo, hi), "RELU": (max(lo, q(0.0)), hi), "RELU6": (max(lo, q(0.0)), min(hi, q(6.0))),
            "RELU_N1_TO_1": (max(lo, q(-1.0)), min(hi, q(1.0)))}


def fused_activation(op: Op, scale: float, zero_point: int) -> str:
    want = (int(op.act_min), int(op.act_max))
    for name, rng in activation_ranges(scale, zero_point).items():
        if rng == want:
            return name
    raise Esc2cError(f"layer '{op.name}': clamp [{want[0]}, {want[1]}] is not a TFLite fused activation at "
                     f"output scale {scale}, zero point {zero_point} (NONE/RELU/RELU6/RELU_N1_TO_1 give "
                     f"{activation_ranges(scale, zero_point)})")


def tflite_conv_params(s_in: float, s_w, s_out: float) -> tuple[np.ndarray, np.ndarray]:
    """The (multiplier, shift) TFLite computes from the float32 scales in the flatbuffer."""
    return intparams.conv_requant(float(f32(s_in)), f32(s_w).astype(np.float64), float(f32(s_out)))


# ---------------------------------------------------------------- the writer
class _Writer:
    def __init__(self, g: Graph, pad_ops: bool):
        self.fb = schema()
        self.g = g
        self.pad_ops = pad_ops
        self.tensors: list = []
        self.buffers: list = [self.fb.BufferT()]  # buffer 0: the empty sentinel
        self.operators: list = []
        self.opcodes: dict[str, int] = {}
        self.index: dict[str, int] = {}
        self.inserted_pads: list[str] = []
        self.pools_as_depthwise: list[str] = []

    # ----- tensors
    def quant(self, scales, zero_points, dim: int = 0):
        q = self.fb.QuantizationParametersT()
        q.scale = [float(s) for s in f32(np.atleast_1d(scales))]
        q.zeroPoint = [int(z) for z in np.atleast_1d(zero_points)]
        q.quantizedDimension = dim
        return q

    def tensor(self, name: str, shape, ttype: int, quant=None, data: np.ndarray | None = None) -> int:
        t = self.fb.TensorT()
        t.name = name
        t.shape = [int(d) for d in shape]
        t.type = ttype
        t.quantization = quant
        if data is not None:
            b = self.fb.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), dtype=np.uint8).copy()
            self.buffers.append(b)
            t.buffer = len(self.buffers) - 1
        self.tensors.append(t)
        return len(self.tensors) - 1

    def activation(self, name: str) -> int:
        if name not in self.index:
            t = self.g.tensors[name]
            self.index[name] = self.tensor(name, t.shape, self.fb.TensorType.INT8,
                                           self.quant(t.scale, t.zero_point))
        return self.index[name]

    def const(self, name: str, values: np.ndarray, ttype: int, quant=None) -> int:
        return self.tensor(name, values.shape, ttype, quant, values)

    # ----- operators
    def operator(self, code: str, inputs: list[int], outputs: list[int], options=None, options_type: str | None = None):
        fb = self.fb
        self.opcodes.setdefault(code, len(self.opcodes))
        o = fb.OperatorT()
        o.opcodeIndex = self.opcodes[code]
        o.inputs, o.outputs = inputs, outputs
        if options is not None:
            o.builtinOptionsType = getattr(fb.BuiltinOptions, options_type)
            o.builtinOptions = options
        self.operators.append(o)

    def act(self, op: Op) -> int:
        y = self.g.tensors[op.output]
        return getattr(self.fb.ActivationFunctionType, fused_activation(op, y.scale, y.zero_point))

    def padded_input(self, op: Op, pad_with: str | None, why_not: str = "") -> tuple[int, str]:
        """(tensor index of the layer's input, TFLite padding), with a PAD op inserted if needed:
        ``pad_with`` "zero_point" (PAD: padded taps add nothing to a convolution), "lowest" (PADV2 with -128:
        never the maximum of a window with a real element) or None (no explicit pad can express the layer;
        ``why_not`` says why)."""
        g, fb = self.g, self.fb
        x, y = g.tensors[op.inputs[0]], g.tensors[op.output]
        kernel, stride, pads = op.attrs["kernel"], op.attrs["stride"], op.attrs["pads"]
        padding = tflite_padding(x.shape[1:3], y.shape[1:3], kernel, stride, pads)
        xi = self.activation(op.inputs[0])
        if padding is not None:
            return xi, padding
        full = end_pads(x.shape[1:3], y.shape[1:3], kernel, stride, pads)
        if not self.pad_ops or pad_with is None:
            raise Esc2cError(f"layer '{op.name}': pads (top, left, bottom, right) = {full} for input {x.shape[1:3]}, "
                             f"kernel {tuple(kernel)}, stride {tuple(stride)} are not expressible in TFLite "
                             f"(SAME/VALID only" + (f", and {why_not})" if why_not else ")"))
        t, l, b, r = full
        shape = (1, x.shape[1] + t + b, x.shape[2] + l + r, x.shape[3])
        paddings = np.array([[0, 0], [t, b], [l, r], [0, 0]], np.int32)
        pi = self.const(f"{op.name}/paddings", paddings, fb.TensorType.INT32)
        out = self.tensor(f"{op.name}/padded", shape, fb.TensorType.INT8, self.quant(x.scale, x.zero_point))
        if pad_with == "lowest":
            vi = self.const(f"{op.name}/pad_value", np.array([-128], np.int8), fb.TensorType.INT8,
                            self.quant(x.scale, x.zero_point))
            self.operator("PADV2", [xi, pi, vi], [out], fb.PadV2OptionsT(), "PadV2Options")
        else:
            self.operator("PAD", [xi, pi], [out], fb.PadOptionsT(), "PadOptions")
        self.inserted_pads.append(op.name)
        return out, "VALID"

    def check_requant(self, op: Op, s_in, s_w, s_out, mult, shift):
        m, s = tflite_conv_params(s_in, s_w, s_out)
        mult, shift = np.broadcast_to(mult, m.shape), np.broadcast_to(shift, s.shape)
        bad = np.flatnonzero((m != mult) | (s != shift))
        if bad.size:
            c = int(bad[0])
            raise Esc2cError(f"layer '{op.name}': TFLite would derive multiplier/shift {int(m[c])}/{int(s[c])} "
                             f"for channel {c} from the float32 scales, the IR has {int(mult[c])}/{int(shift[c])}")

    # ----- for the op kinds' lower_tflite (esc2c/compiler/ops/)
    @staticmethod
    def padding(in_hw, out_hw, kernel, stride, pads) -> str | None:
        return tflite_padding(in_hw, out_hw, kernel, stride, pads)

    @staticmethod
    def conv_params(s_in: float, s_w, s_out: float) -> tuple[np.ndarray, np.ndarray]:
        return tflite_conv_params(s_in, s_w, s_out)

    def write(self) -> TfliteModel:

        g, fb = self.g, self.fb
        if g.layout != "NHWC" or not all(ops.get(op.kind).params_ready(op) for op in g.ops):
            raise ValueError("write_tflite needs the IR after all compiler passes")
        for name in g.inputs:
            self.activation(name)
        for op in g.ops:
            ops.get(op.kind).lower_tflite(op, g, self)
        sg = fb.SubGraphT()
        sg.tensors, sg.operators = self.tensors, self.operators
        sg.inputs = [self.index[n] for n in g.inputs]
        sg.outputs = [self.index[n] for n in g.outputs]
        sg.name = "main"
        model = fb.ModelT()
        model.version = SCHEMA_VERSION
        model.description = "esc2c"
        model.subgraphs = [sg]
        model.buffers = self.buffers
        codes = sorted(self.opcodes, key=self.opcodes.get)
        model.operatorCodes = []
        for code in codes:
            oc = fb.OperatorCodeT()
            oc.builtinCode = getattr(fb.BuiltinOperator, code)
            oc.deprecatedBuiltinCode = min(oc.builtinCode, 127)
            oc.version = 1
            model.operatorCodes.append(oc)
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
        return TfliteModel(bytes(builder.Output()), dict(self.index), codes, self.inserted_pads,
                           self.pools_as_depthwise)


def _aligned(data: bytes) -> bytes:
    """Re-pack with the C++ flatbuffers library, which aligns the constant buffers to 16 bytes."""
    # lazy: a native extension, only when a .tflite is written
    from tflite_micro.tensorflow.lite.micro.tools import tflite_flatbuffer_align_wrapper as align

    with tempfile.TemporaryDirectory(prefix="esc2c-tflite-") as d:
        src, dst = Path(d) / "in.tflite", Path(d) / "out.tflite"
        src.write_bytes(data)
        align.align_tflite_model(str(src), str(dst))
        return dst.read_bytes()


def write_tflite(g: Graph, pad_ops: bool = True) -> TfliteModel:
    """The IR (after all passes) as a .tflite model with the same integer arithmetic (double rounding).
    A fused conv + pool (``conv_pool``) is written as its CONV_2D and pool with the conv output between."""

    m = _Writer(unfuse(g), pad_ops).write()
    m.data = _aligned(m.data)
    return m

