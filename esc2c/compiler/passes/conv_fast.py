"""The fast convolution kernel's helpers live in esc2c/compiler/ops/conv_fast.py (a helper of the conv op
kind); the kernel choice names the passes take, and the flash cost, are importable from here as before."""
from esc2c.compiler.ops.conv_fast import DEFAULT_KERNELS, KERNEL_CHOICES, flash_bytes_delta

__all__ = ["DEFAULT_KERNELS", "KERNEL_CHOICES", "flash_bytes_delta"]
