"""The experiment grid spread over the processes of a ``torchrun`` launch: every rank is a grid worker.

``torchrun --nnodes M --nproc-per-node K ... -m esc2c experiment CONFIG -o DIR`` starts M x K processes. Each
rank claims cells of the grid with the lock files of :mod:`esc2c.experiment.grid` (DIR must be on a filesystem
every node sees), starting at its own share of the cells, and runs them in worker processes whose
environment has the launcher's variables removed, so a cell is a plain one-process ``esc2c compress`` - or,
with ``--cell-procs N``, a local ``torchrun --standalone`` of N processes on the rank's node. On CUDA with one
process per cell, rank ``LOCAL_RANK`` gives its cells GPU ``LOCAL_RANK`` of its node (``CUDA_VISIBLE_DEVICES``).

When its cells are done, a rank joins a gloo process group (this module's only collective) and the ranks
exchange their outcome: every rank learns which ranks failed, and rank 0 alone writes the report. The group
waits for the slowest rank at most ``ESC2C_CELL_TIMEOUT`` seconds per cell of the grid.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable

import torch.distributed as dist

from esc2c.compress import distributed
from esc2c.compress.config import CompressConfig
from esc2c.errors import Esc2cError
from esc2c.experiment import grid

# what torchrun (torch.distributed.elastic) puts in its workers' environment
LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
                 "ROLE_RANK", "ROLE_NAME", "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
LAUNCHER_PREFIXES = ("TORCHELASTIC_",)


@dataclass(frozen=True)
class Launch:
    rank: int
    world: int
    local_rank: int


def launched() -> Launch | None:
    """The rank of this process when a launcher (torchrun) started several; None for a plain invocation."""
    rank, world, local = distributed.launcher_env()
    return Launch(rank, world, local) if world > 1 else None


def child_environment(launch: Launch, device: str, cell_procs: int) -> dict:
    """This process's environment without the launcher's variables (a cell must not join the launch's
    process group); a one-process CUDA cell sees only GPU ``LOCAL_RANK``."""
    env = {k: v for k, v in os.environ.items()
           if k not in LAUNCHER_VARS and not k.startswith(LAUNCHER_PREFIXES)}
    if str(device).startswith("cuda") and cell_procs == 1:
        visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        env["CUDA_VISIBLE_DEVICES"] = visible[launch.local_rank] if launch.local_rank < len(visible) \
            else str(launch.local_rank)
    return env


def _gather(launch: Launch, outcome: str | None, n_cells: int) -> list[str | None]:
    """Every rank's outcome (None: its cells finished; else its error), via a gloo group over the launch."""

    wait = grid.cell_timeout() * max(1, n_cells)
    dist.init_process_group("gloo", rank=launch.rank, world_size=launch.world, timeout=timedelta(seconds=wait))
    try:
        got: list = [None] * launch.world
        dist.all_gather_object(got, outcome)
        return got
    finally:
        dist.destroy_process_group()


def run_grid_ranks(launch: Launch, out_dir, base: CompressConfig, cells: list[grid.Cell], jobs: int = 1,
                   threads: int | None = None, log: Callable[[str], None] = print, cell_procs: int = 1) -> None:
    """This rank's part of the grid, then the exchange of outcomes; raises on every rank when any failed."""
    tag = f"[rank {launch.rank}/{launch.world}]"

    def say(msg: str) -> None:
        log(f"{tag} {msg}")

    outcome = None
    try:
        grid.check_base(base)
        grid.prepare(out_dir, base)              # atomic: every rank brings the same config
        order = grid.rotated(cells, launch.rank, launch.world)
        grid.run_grid(out_dir, base, order, jobs=jobs, threads=threads, log=say, cell_procs=cell_procs,
                      child_env=child_environment(launch, base.device, cell_procs))
    except Esc2cError as e:
        outcome = str(e)
        say(f"error: {e}")
    outcomes = _gather(launch, outcome, len(cells))
    failed = [(r, o) for r, o in enumerate(outcomes) if o is not None]
    if failed:
        r, first = failed[0]
        raise Esc2cError(f"{len(failed)} of {launch.world} ranks failed (rank {r}: {first}); run the same "
                         "command again to resume")
