"""The choices a compilation takes (``esc2c emit --kernels/--fuse``), checked once, recorded in esc2c.json."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from esc2c.contract import CONTRACTS, TFLITE
from esc2c.errors import Esc2cError

KERNEL_CHOICES = ("fast", "cmsis")
DEFAULT_KERNELS = "fast"
FUSE_MODES = ("auto", "all", "none")
DEFAULT_FUSE = "auto"


@dataclass(frozen=True)
class CompileOptions:
    """``kernels``: "fast" runs plain convolutions on the project's kernel, "cmsis" on CMSIS-NN's;
    ``fuse``: which conv -> pool pairs run band-wise: "auto" (when the arena gets smaller), "all", "none";
    ``flash_budget``: bytes of flash the model's constants may take (emit --board: the board's flash less
    the code and the test vectors, footprint.py); layers whose kernel widens weights switch to int8 ones until they fit (fit_flash);
    ``contract``: the integer arithmetic the parameters and kernels follow (contract.CONTRACTS): "tflite"
    (TFLite / CMSIS-NN fixed point) or "onnxruntime" (onnxruntime's fused integer kernels, float32 scales;
    only the project's own kernels, never CMSIS-NN's requantizing ones)."""
    kernels: str = DEFAULT_KERNELS
    fuse: str = DEFAULT_FUSE
    flash_budget: int | None = None
    contract: str = TFLITE

    def __post_init__(self):
        if self.kernels not in KERNEL_CHOICES:
            raise Esc2cError(f"kernels must be one of {', '.join(KERNEL_CHOICES)}, got {self.kernels!r}")
        if self.fuse not in FUSE_MODES:
            raise Esc2cError(f"fuse must be one of {', '.join(FUSE_MODES)}, got {self.fuse!r}")
        if self.contract not in CONTRACTS:
            raise Esc2cError(f"contract must be one of {', '.join(CONTRACTS)}, got {self.contract!r}")
        if self.flash_budget is not None and self.flash_budget < 0:
            raise Esc2cError(f"flash budget must be >= 0 bytes, got {self.flash_budget}")

    def to_dict(self) -> dict:
        return asdict(self)
