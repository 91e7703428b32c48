"""Data-parallel runs under ``torchrun``: process group, rank helpers, broadcasts, synchronised BatchNorm.

``torchrun --nproc-per-node N -m esc2c compress ...`` starts N processes with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` (and the rendezvous ``MASTER_ADDR`` / ``MASTER_PORT``) in their environment. :func:`setup`
reads them: with ``WORLD_SIZE`` > 1 it joins the process group - ``nccl`` when the run's device is CUDA (each
process then takes GPU ``LOCAL_RANK``), ``gloo`` on the CPU - else it does nothing and every helper here is the
identity of a one-process run (no process group, the same code path as a plain ``esc2c compress``).

Collectives wait at most ``ESC2C_DIST_TIMEOUT`` seconds (default 7200): the ranks that wait while rank 0
prunes, exports or writes the report must not time out, and a rank that died must not hang the others forever
(``torchrun`` also stops every worker as soon as one fails).

:class:`SyncBatchNorm2d` computes a training batch's BatchNorm statistics over the global batch, all ranks
together (one all-reduce of count, sum and sum of squares per layer, differentiable), so a student trained on
N ranks normalises exactly as on one process with the same global batch. It works with gloo and nccl alike
(``torch.nn.SyncBatchNorm`` refuses CPU tensors).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import nn

from esc2c.errors import Esc2cError

DEFAULT_TIMEOUT_S = 7200.0


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None        # None: one process, no process group
    owned: bool = False               # True when setup() created the group (shutdown() destroys it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    v = os.environ.get(name)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except ValueError:
        raise Esc2cError(f"environment variable {name}={v!r} is not an integer (set by torchrun)") from None


def timeout_seconds() -> float:
    v = os.environ.get("ESC2C_DIST_TIMEOUT", "")
    try:
        t = float(v) if v else DEFAULT_TIMEOUT_S
    except ValueError:
        raise Esc2cError(f"ESC2C_DIST_TIMEOUT={v!r} must be a number of seconds") from None
    if t <= 0:
        raise Esc2cError(f"ESC2C_DIST_TIMEOUT={v!r} must be > 0 seconds")
    return t


def _resolve(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise Esc2cError(f"unknown device {device!r}; use 'cpu' or 'cuda'") from None
    if dev.type not in ("cpu", "cuda"):
        raise Esc2cError(f"unsupported device {device!r}; use 'cpu' or 'cuda'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise Esc2cError("device 'cuda' requested but torch sees no CUDA GPU (use --device cpu)")
    return dev


def launcher_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) as the launcher (torchrun) set them; (0, 1, 0) for one process."""
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return 0, 1, 0
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if not 0 <= rank < world:
        raise Esc2cError(f"RANK={rank} is outside WORLD_SIZE={world}")
    return rank, world, local


def setup(device: str = "cpu") -> DistEnv:
    """Join the process group torchrun describes (nothing to do for one process); the device this rank uses."""
    rank, world, local = launcher_env()
    dev = _resolve(device)
    if world <= 1:
        return DistEnv(device=dev)
    if dev.type == "cuda":
        if local >= torch.cuda.device_count():
            raise Esc2cError(f"LOCAL_RANK={local} but this node has {torch.cuda.device_count()} CUDA GPU(s): "
                             "start at most that many processes per node")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    owned = False
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_seconds()),
                                **({"device_id": dev} if dev.type == "cuda" else {}))
        owned = True
    elif dist.get_world_size() != world:
        raise Esc2cError(f"a process group of {dist.get_world_size()} ranks exists but WORLD_SIZE={world}")
    return DistEnv(dist.get_rank(), dist.get_world_size(), local, dev, dist.get_backend(), owned)


def launch_rank() -> int:
    """This process's rank as the launcher set it (valid before and after the process group exists)."""
    return launcher_env()[0]


def shutdown(env: DistEnv) -> None:
    if env.owned and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    """True inside a process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


def _object_device() -> torch.device | None:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None


def broadcast_object(obj=None, src: int = 0):
    """``obj`` of rank ``src`` on every rank (pickled; tensors inside come back on the CPU as they went)."""
    if not active():
        return obj
    box = [obj if dist.get_rank() == src else None]
    dist.broadcast_object_list(box, src=src, device=_object_device())
    return box[0]


def on_main(fn):
    """``fn()`` run on rank 0 only, its result broadcast to every rank (the others wait). An error on rank 0
    is raised on every rank: on rank 0 as it is, on the others as an Esc2cError naming it."""
    if not active():
        return fn()
    if is_main():
        try:
            result = fn()
        except BaseException as e:
            broadcast_object(("error", f"{type(e).__name__}: {e}"))
            raise
        broadcast_object(("ok", result))
        return result
    status, value = broadcast_object()
    if status == "error":
        raise Esc2cError(f"rank 0 failed: {value}")
    return value


@contextlib.contextmanager
def main_first():
    """Rank 0 runs the block first (e.g. filling a cache), the other ranks after it."""
    if is_main():
        yield
        barrier()
    else:
        barrier()
        yield


def all_reduce_sum(values: list[float], device: torch.device | str = "cpu") -> list[float]:
    """Element-wise sum over ranks of a few numbers (float64)."""
    if not active():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def share(n: int, world: int, rank: int) -> tuple[int, int]:
    """Rows [lo, hi) of a batch of ``n`` that ``rank`` of ``world`` takes: contiguous, sizes differing by at
    most one (the first ``n % world`` ranks take one more; a rank takes none when ``n < world``)."""
    base, extra = divmod(n, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


# --------------------------------------------------------------------------------------------- BatchNorm
class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch over all ranks.

    Same parameters and buffers as BatchNorm2d (a converted module keeps its state dict). In eval mode, or
    outside a process group, it is plain BatchNorm2d. A rank may hold no rows of a batch (it then adds nothing
    to the statistics but still takes part in the all-reduce).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and active()):
            return super().forward(x)
        self._check_input_dim(x)
        c = x.shape[1]
        flat = x.transpose(0, 1).reshape(c, -1).double()
        count = torch.full((1,), float(flat.shape[1]), dtype=torch.float64, device=x.device)
        stats = dist_fn.all_reduce(torch.cat([count, flat.sum(1), (flat * flat).sum(1)]))
        n = stats[0]
        if float(n.detach()) < 2:
            raise Esc2cError(f"BatchNorm over a global batch of {int(n)} value(s) per channel: "
                             "use a larger batch size")
        mean = stats[1:1 + c] / n
        var = (stats[1 + c:] / n - mean * mean).clamp_min(0.0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - m).add_(mean.to(self.running_mean.dtype), alpha=m)
                unbiased = var * (n / (n - 1))
                self.running_var.mul_(1 - m).add_(unbiased.to(self.running_var.dtype), alpha=m)
        shape = (1, c, 1, 1)
        y = (x - mean.to(x.dtype).view(shape)) * torch.rsqrt(var.to(x.dtype).view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_batchnorm(module: nn.Module) -> list[nn.Module]:
    """Turn every plain BatchNorm2d of ``module`` into a SyncBatchNorm2d in place (same parameters, same
    optimizer state); returns the converted modules for :func:`revert_batchnorm`."""
    done = []
    for m in module.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = SyncBatchNorm2d
            done.append(m)
    return done


def revert_batchnorm(modules: list[nn.Module]) -> None:
    for m in modules:
        m.__class__ = nn.BatchNorm2d


@contextlib.contextmanager
def synced_observers(module: nn.Module):
    """While training on several ranks, QAT activation observers take the global batch's min / max."""
    obs = [m for m in module.modules() if hasattr(m, "sync_ranks")]
    for m in obs:
        m.sync_ranks = active()
    try:
        yield
    finally:
        for m in obs:
            m.sync_ranks = False

