"""The names every part of esc2c agrees on, in one place (DESIGN.md: the integer contract).

Rounding modes of the int8 requantization, the ONNX metadata keys ``compress`` writes and ``emit`` reads,
and the architectures and datasets the tool knows. Modules import these names; none repeats the literals.
"""
from __future__ import annotations

# requantization rounding: "double" is CMSIS-NN's arm_nn_requantize (doubling high multiply, then a rounding
# shift), "single" TFLite's single-rounding variant (esc2c.quant.intparams.requantize implements both)
ROUNDING_MODES = ("double", "single")
DEFAULT_ROUNDING = "double"

# The two integer contracts a deployed model can follow (DESIGN.md section 3):
# * "tflite": TFLite / CMSIS-NN int8 arithmetic (integer multiplier + shift, one of ROUNDING_MODES); what
#   `esc2c compress` trains for, and what TFLite Micro computes;
# * "onnxruntime": what onnxruntime's CPU execution provider computes for a QDQ model at full optimisation
#   with session.qdqisint8allowed=1 and session.x64quantprecision=1 (exact u8u8 products for uint8 models on
#   x86 CPUs without VNNI) (QLinearConv / QGemm: float32 scale, round half to even; QLinearAdd,
#   QLinearAveragePool, QLinearGlobalAveragePool: their float32 formulas; esc2c.quant.ortparams); its
#   arithmetic is named ORT_ROUNDING where a rounding mode is expected.
CONTRACTS = ("tflite", "onnxruntime")
TFLITE, ONNXRUNTIME = CONTRACTS
ORT_ROUNDING = "float"
ARITHMETICS = ROUNDING_MODES + (ORT_ROUNDING,)  # every value a project's "rounding" may take
# onnxruntime's quantization tool (quantize_static / quantize_dynamic) names itself the model's producer
ORT_PRODUCERS = ("onnx.quantize",)

# ONNX metadata_props written by esc2c.quant.export and read by the compiler and the log-mel front end
META_FEATURE_SPEC = "esc2c.feature_spec"  # FeatureSpec JSON
META_CLASS_NAMES = "esc2c.class_names"  # JSON list of class names
META_ROUNDING = "esc2c.rounding"  # one of ROUNDING_MODES (the tflite contract)
META_OUTPUT = "esc2c.output"  # integer ONNX (compiler lowering): the name of the logits tensor
# what the importer read from the file beside its metadata_props: the producer_name, and "uint8" when a
# QuantizeLinear has a uint8 zero point (onnxruntime then runs its u8s8 kernels)
META_PRODUCER = "onnx.producer_name"
META_ACTIVATIONS = "onnx.activation_type"

# what `esc2c compress` can build and train on
ARCHS = ("vgg11", "resnet18", "small")
DATASETS = ("synthetic", "esc50", "urbansound8k")

# the files `esc2c emit` writes beside the C sources, which verify / run / audio read back
PROJECT_META = "esc2c.json"
PROJECT_IR = "model.ir.json"


def contract_of(rounding: str) -> str:
    """The contract a project's arithmetic belongs to."""
    return ONNXRUNTIME if rounding == ORT_ROUNDING else TFLITE


def check_rounding(rounding: str) -> str:
    """``rounding`` if it is one of :data:`ROUNDING_MODES`; otherwise ValueError naming the choices."""
    if rounding not in ROUNDING_MODES:
        raise ValueError(f"rounding must be one of {', '.join(ROUNDING_MODES)}, got {rounding!r}")
    return rounding
