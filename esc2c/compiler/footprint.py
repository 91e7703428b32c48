"""What an STM32F746ZG firmware needs beside the model's constants, in one place: ``esc2c emit``'s fit check
and flash budget (emit.py, passes/fit_flash.py) and ``esc2c compress``'s board budgets
(esc2c/compress/budget.py) all count with it.

Measured by ``benchmarks/bench_costmodel.py --firmware`` (arm-none-eabi-gcc 12.2, Release, one self-test
vector), flash beside the constants and that vector: 34,354 B (VGG-11 pruned 97 %), 35,164 B (ResNet-18 pruned
80 %, which adds the residual-add kernel), 36,786-36,850 B (the paper-size reference model, fast convolutions
all on int8 or all on int16 weights): the runtime, the kernels (the small-tap first-layer kernel's window
variants included), start-up and board code. A firmware whose fast convolutions read both widths links both
sets of dot loops: 50,600 B (tests/compiler/test_fit_flash.py's board model), 13,750 B more. RAM beside the
arena 23,468-24,716 B: the main stack, runtime and board data.
Rounded up:
"""
from __future__ import annotations

from esc2c.compiler.ir import Graph
from esc2c.compiler.ops.conv_fast import FAST_CONV, FAST_CONV_W8

CODE_BYTES = 38 * 1024
BOTH_WIDTHS_CODE_BYTES = 15 * 1024
RAM_BASE_BYTES = 25 * 1024


def extra_code_bytes(g: Graph) -> int:
    """Code beyond CODE_BYTES that ``g``'s kernel choice links: the second set of fast-convolution dot loops
    when some layers read int16 weights and others int8."""
    kernels = {op.kernel for op in g.ops}
    return BOTH_WIDTHS_CODE_BYTES if {FAST_CONV, FAST_CONV_W8} <= kernels else 0


def code_bytes(g: Graph) -> int:
    """Flash of the firmware's code for ``g``."""
    return CODE_BYTES + extra_code_bytes(g)


def vector_bytes(input_size: int, output_size: int, n_vectors: int) -> int:
    """Flash the self-test vectors ``esc2c emit --vectors N`` compiles in take: an int8 input and output each."""
    return n_vectors * (input_size + output_size)
