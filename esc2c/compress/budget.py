"""Board budgets for CUP: prune until the deployed model fits a board's flash and RAM and a latency.

The cost of a (float, pruned) model is read from the compiler itself (:mod:`esc2c.compress.deploy_graph`):

  flash    the constants as the compiler stores them (int8 weights, or int16 for the fast convolution
           kernel where they fit the flash limit less the code -- the compiler's own per-layer choice,
           passes/fit_flash.py --, int32 biases, per-channel multipliers and shifts) + the rest of the firmware
           image (runtime, kernels, start-up and board code: esc2c/compiler/footprint.py, which emit counts
           with too); the self-test vectors ``esc2c emit --vectors`` compiles in are not counted (each adds
           one input's and one output's bytes, and emit's own fit check adds them)
  RAM      the arena of the compiler's memory planner + the stack and runtime data (footprint.py)
  latency  the compiler's instruction cost model (:mod:`esc2c.compiler.costmodel`) at 216 MHz

:func:`prune_to_budget` finds the least pruning (by bisection on the CUP threshold, with the width rule)
that meets every limit; a budget no pruning meets fails with one line saying by how much.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from esc2c.compiler import costmodel
from esc2c.compiler.emit import board_limits
from esc2c.compiler.footprint import CODE_BYTES, RAM_BASE_BYTES, code_bytes
from esc2c.compiler.ops.conv_fast import flash_bytes_delta
from esc2c.compiler.options import DEFAULT_KERNELS
from esc2c.compress import cup
from esc2c.compress.deploy_graph import calibration_inputs, compile_float
from esc2c.errors import Esc2cError
from esc2c.models.blocks import ESCNet

# kernel-friendly widths used when a board is named and the options are not given
BOARD_CHANNEL_MULTIPLE = 4
BOARD_MIN_CHANNELS = 8


def widths_for(board: str | None, channel_multiple: int = 0, min_channels: int = 0) -> cup.Widths:
    """The kept-width rule: the given multiple / minimum, or (0) the board defaults when a board is named
    (the fast kernel works on channel pairs, CMSIS-NN's SIMD paths on multiples of 4), else none."""
    mult = channel_multiple or (BOARD_CHANNEL_MULTIPLE if board else 1)
    low = min_channels or (BOARD_MIN_CHANNELS if board else 1)
    return cup.Widths(mult, low)


@dataclass(frozen=True)
class Budget:
    board: str
    max_flash: int
    max_ram: int
    max_latency_ms: float | None = None
    kernels: str = DEFAULT_KERNELS

    def describe(self) -> str:
        lat = f", latency {self.max_latency_ms:g} ms" if self.max_latency_ms is not None else ""
        return f"{self.board}: flash {self.max_flash} B, RAM {self.max_ram} B{lat}"


def board_budget(board: str, max_flash: int | None = None, max_ram: int | None = None,
                 max_latency_ms: float | None = None, kernels: str = DEFAULT_KERNELS) -> Budget:
    """The budget on ``board``: its flash and RAM (boards/<board>/board.cmake) unless smaller limits are
    given, and an optional latency."""
    flash_limit, ram_limit = board_limits(board)
    for name, v, limit in (("max_flash", max_flash, flash_limit), ("max_ram", max_ram, ram_limit)):
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise Esc2cError(f"{name} must be a positive number of bytes (got {v!r})")
        if v > limit:
            raise Esc2cError(f"{name} {v} B is more than {board} has ({limit} B)")
    if max_latency_ms is not None and not float(max_latency_ms) > 0:
        raise Esc2cError(f"max_latency_ms must be > 0 (got {max_latency_ms!r})")
    return Budget(board, max_flash or flash_limit, max_ram or ram_limit,
                  None if max_latency_ms is None else float(max_latency_ms), kernels)


@dataclass
class Cost:
    flash: int
    ram: int
    latency_ms: float
    weight_bytes: int
    arena_bytes: int
    instructions: int

    def summary(self) -> dict:
        return dict(vars(self))


def deployed_cost(model: ESCNet, in_shape, kernels: str = DEFAULT_KERNELS,
                  calib: torch.Tensor | None = None, max_flash: int | None = None) -> Cost:
    """Flash, RAM and estimated latency of ``model`` once quantized and compiled (module docstring); with
    ``max_flash``, as compiled for that much flash (int8 weights for the fast convolutions that must)."""
    g = compile_float(model, in_shape, kernels, calib,
                      flash_budget=None if max_flash is None else max(0, max_flash - CODE_BYTES))
    weights = g.weight_bytes() + flash_bytes_delta(g)
    est = costmodel.estimate(g)
    return Cost(weights + code_bytes(g), g.arena_size + RAM_BASE_BYTES, est.latency_ms, weights,
                g.arena_size, est.instructions)


def over(cost: Cost, budget: Budget) -> list[str]:
    """What ``cost`` exceeds, one phrase per limit (empty: it fits)."""
    out = []
    if cost.flash > budget.max_flash:
        out.append(f"flash {cost.flash} B > {budget.max_flash} B by {cost.flash - budget.max_flash} B")
    if cost.ram > budget.max_ram:
        out.append(f"RAM {cost.ram} B > {budget.max_ram} B by {cost.ram - budget.max_ram} B")
    if budget.max_latency_ms is not None and cost.latency_ms > budget.max_latency_ms:
        out.append(f"latency {cost.latency_ms:.2f} ms > {budget.max_latency_ms:g} ms by "
                   f"{cost.latency_ms - budget.max_latency_ms:.2f} ms (cost-model estimate)")
    return out


def prune_to_budget(model: ESCNet, in_shape, budget: Budget, widths: cup.Widths = cup.PLAIN,
                    start: cup.PruneResult | None = None, clustering: cup.Clustering | None = None,
                    ) -> tuple[cup.PruneResult, Cost]:
    """The least CUP pruning of ``model`` (at least ``start``'s, when given) whose deployed cost meets
    ``budget``. Raises Esc2cError (one line, by how much) when even the most pruning does not."""
    calib = calibration_inputs(in_shape)
    costs: dict[int, Cost] = {}

    def fits(m: ESCNet) -> tuple[bool, str]:
        c = deployed_cost(m, in_shape, budget.kernels, calib, budget.max_flash)
        costs[id(m)] = c
        bad = over(c, budget)
        return not bad, "; ".join(bad)

    try:
        res = cup.prune_until(model, fits, widths, start=start, clustering=clustering)
    except Esc2cError as e:
        raise Esc2cError(f"budget {budget.describe()} cannot be met: {e}") from None
    cost = costs.get(id(res.model)) or deployed_cost(res.model, in_shape, budget.kernels, calib, budget.max_flash)
    return res, cost
