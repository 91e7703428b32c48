"""The experiment grid: cells (seed x test fold), their configs, an atomic per-cell lock and the worker loop.

Layout of an experiment directory ``DIR``::

  DIR/grid.json                     the base config every cell derives from (first invocation writes it)
  DIR/cells/seed{S}-fold{F}/        one ``esc2c compress`` run (stages/, model.onnx, report.json)
  DIR/cells/seed{S}-fold{F}.log     that run's output, epoch lines included (beside the run: its directory
                                    holds nothing but what ``esc2c compress`` writes)
  DIR/cells/seed{S}-fold{F}.lock    present while a worker runs that cell: {"host", "pid", "boot", "start"}

A cell tests fold F: its config is the base config with ``seed`` S, ``val_folds`` [F] and ``train_folds`` the
other folds of the pool (the config's ``cv_folds``, else its train and val folds together); the config's
``holdout`` picks every stage's best epoch on recordings held out of the training folds, so fold F is only
ever tested.

A cell is finished when its ``report.json`` exists (the pipeline writes it last, atomically). A worker walks
its cells: finished ones are skipped, others are claimed by creating the lock file atomically (a complete
file is hard-linked into place, which fails like ``O_EXCL`` when the lock exists), run through
:func:`esc2c.compress.pipeline.run` (whose stage runner resumes an interrupted cell at its last epoch) and
released. Workers may be processes of one invocation (``--jobs``), other invocations, or other machines on a
shared filesystem: two never run the same cell. A lock whose holder is a dead process of this host (same
boot, pid gone or reused) is stale and reclaimed; a lock of another host is left to that host.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from esc2c import proc
from esc2c.compress import pipeline
from esc2c.compress.config import CompressConfig
from esc2c.errors import Esc2cError
from esc2c.fsutil import atomic_write_text
from esc2c.resources import source_checkout

GRID_FILE = "grid.json"
CELLS_DIR = "cells"
REPORT = "report.json"
CELL_LOG = ".log"
# settings that may differ between the machines or invocations sharing one grid without changing a result
RUNTIME_FIELDS = ("threads", "device", "cache_dir", "data_dir")
# fields two runs may differ in and still be the same experiment: where and how fast it runs, and the preset's
# name (it only sets other fields, which are compared)
SAME_EXPERIMENT_FIELDS = RUNTIME_FIELDS + ("preset",)
CELL_RE = re.compile(r"^seed(\d+)-fold(\d+)$")


@dataclass(frozen=True, order=True)
class Cell:
    seed: int
    fold: int          # the test fold

    @property
    def name(self) -> str:
        return f"seed{self.seed}-fold{self.fold}"

    @classmethod
    def parse(cls, name: str) -> "Cell":
        m = CELL_RE.match(name)
        if not m:
            raise Esc2cError(f"{name!r} is not a cell name (seed<S>-fold<F>)")
        return cls(int(m.group(1)), int(m.group(2)))


def cell_dir(out_dir, cell: Cell) -> Path:
    return Path(out_dir) / CELLS_DIR / cell.name


def lock_path(out_dir, cell: Cell) -> Path:
    return Path(out_dir) / CELLS_DIR / f"{cell.name}.lock"


# ---- planning ------------------------------------------------------------------------------------------------
def parse_seeds(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]."""
    try:
        seeds = [int(t) for t in str(text).replace(" ", "").split(",") if t]
    except ValueError:
        raise Esc2cError(f"--seeds must be comma-separated integers like 0,1,2 (got {text!r})") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise Esc2cError(f"--seeds must name distinct seeds >= 0 (got {text!r})")
    return seeds


def fold_pool(cfg: CompressConfig) -> list[int]:
    """The folds a cross-validation rotates over: ``cv_folds``, else the config's train and val folds."""
    return list(cfg.cv_folds) if cfg.cv_folds else sorted(set(cfg.train_folds) | set(cfg.val_folds))


def parse_test_folds(text: str, cfg: CompressConfig) -> list[int]:
    """``cv`` -> every fold of the pool in turn; ``1,3`` -> those folds of the pool."""
    pool = fold_pool(cfg)
    if len(pool) < 2:
        raise Esc2cError(f"config field 'cv_folds': a cross-validation needs >= 2 folds (pool {pool})")
    if str(text).strip() == "cv":
        return pool
    try:
        folds = [int(t) for t in str(text).replace(" ", "").split(",") if t]
    except ValueError:
        raise Esc2cError(f"--folds must be 'cv' or comma-separated fold numbers like 1,2 (got {text!r})") from None
    outside = [f for f in folds if f not in pool]
    if not folds or outside or len(set(folds)) != len(folds):
        raise Esc2cError(f"--folds {text!r}: test folds must be distinct folds of the pool {pool} "
                         f"(config field 'cv_folds')")
    return folds


def plan(seeds: list[int], test_folds: list[int]) -> list[Cell]:
    return [Cell(s, f) for s in seeds for f in test_folds]


def cell_config(base: CompressConfig, cell: Cell, threads: int | None = None) -> CompressConfig:
    """The config of one cell: seed, test fold ``val_folds``, the rest of the pool trains."""
    pool = fold_pool(base)
    if cell.fold not in pool:
        raise Esc2cError(f"cell {cell.name}: fold {cell.fold} is not in the fold pool {pool}")
    d = base.to_dict()
    d.update(seed=cell.seed, val_folds=[cell.fold], train_folds=[f for f in pool if f != cell.fold])
    if threads is not None:
        d["threads"] = int(threads)
    return CompressConfig(**d).validate()


def check_base(cfg: CompressConfig) -> CompressConfig:
    if not float(cfg.holdout) > 0:
        raise Esc2cError("config field 'holdout': an experiment needs holdout > 0, so that every stage picks its "
                         "best epoch on recordings held out of the training folds and the test fold is never "
                         "used for selection")
    return cfg


@functools.cache
def _default_config() -> dict:
    return json.loads(json.dumps(CompressConfig().to_dict()))


def comparable(config: dict) -> dict:
    """The fields that make an experiment (a config dict as JSON holds it); a field newer than the dict has its
    default value."""
    full = {**_default_config(), **config}
    return {k: v for k, v in full.items() if k not in SAME_EXPERIMENT_FIELDS}


def _first_difference(a: dict, b: dict) -> str:
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            return f"field {k!r}: {a.get(k)!r} != {b.get(k)!r}"
    return "none"


def prepare(out_dir, base: CompressConfig) -> None:
    """Write ``DIR/grid.json`` on the first invocation; later ones must bring the same base config."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise Esc2cError(f"{out}: output path exists and is not a directory")
    (out / CELLS_DIR).mkdir(parents=True, exist_ok=True)
    grid = out / GRID_FILE
    doc = json.dumps({"config": base.to_dict()}, indent=1, sort_keys=True) + "\n"
    tmp = out / f".{GRID_FILE}.{socket.gethostname()}.{os.getpid()}"
    tmp.write_text(doc)
    try:
        os.link(tmp, grid)                      # create-if-absent, complete content
    except FileExistsError:
        old = read_grid(out)
        if comparable(old) != comparable(base.to_dict()):
            raise Esc2cError(f"{grid}: this experiment was started with a different config "
                             f"({_first_difference(comparable(old), comparable(base.to_dict()))}); "
                             "use a new output directory") from None
    finally:
        tmp.unlink(missing_ok=True)


def read_grid(out_dir) -> dict:
    """The base config dict of an experiment directory."""
    grid = Path(out_dir) / GRID_FILE
    if not grid.is_file():
        raise Esc2cError(f"{Path(out_dir)}: not an experiment directory (no {GRID_FILE})")
    try:
        return json.loads(grid.read_text())["config"]
    except (ValueError, KeyError, TypeError) as e:
        raise Esc2cError(f"{grid}: unreadable ({type(e).__name__}: {e})") from None


def finished(out_dir, cell: Cell, expected: CompressConfig | None = None) -> bool:
    """True when the cell's report.json exists; with ``expected``, a report made with another config is an
    error (results of different settings are never mixed)."""
    path = cell_dir(out_dir, cell) / REPORT
    if not path.is_file():
        return False
    if expected is not None:
        try:
            got = comparable(json.loads(path.read_text())["config"])
        except (ValueError, KeyError, TypeError) as e:
            raise Esc2cError(f"{path}: unreadable cell report ({type(e).__name__}: {e}); delete it to rerun "
                             "the cell") from None
        want = comparable(json.loads(json.dumps(expected.to_dict())))
        if got != want:
            raise Esc2cError(f"{path}: cell finished with a different config ({_first_difference(got, want)}); "
                             "use a new output directory")
    return True


# ---- the lock -------------------------------------------------------------------------------------------------
def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _proc_start(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (Linux), None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder_info() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "boot": _boot_id(), "start": _proc_start(os.getpid()),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def read_lock(path) -> dict | None:
    """The holder written in a lock file; None when there is no lock; {} when it is unreadable."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    try:
        info = json.loads(text)
        return info if isinstance(info, dict) else {}
    except ValueError:
        return {}


def is_stale(holder: dict) -> bool:
    """A lock of this host whose process is gone: dead pid, a pid reused by a later process, or a reboot."""
    if not holder or holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    boot = _boot_id()
    if holder.get("boot") and boot and holder["boot"] != boot:
        return True
    pid = holder["pid"]
    if not _alive(pid):
        return True
    return holder.get("start") is not None and _proc_start(pid) not in (None, holder["start"])


def _reclaim(path: Path, stale: dict) -> bool:
    """Remove a stale lock; False when it could not be done now (another worker is reclaiming it, or the lock
    is no longer the stale one). Reclaimers take turns through a second lock (``<lock>.reclaim``), and only a
    reclaimer removes a lock it has not written: so the stale holder read under that lock is still the file's
    content when it is removed, and a fresh lock is never moved (moving one aside, even to put it back, would
    let a third worker claim the cell in between)."""
    guard = path.with_name(f"{path.name}.reclaim")
    tmp = path.with_name(f".{guard.name}.{socket.gethostname()}.{os.getpid()}")
    tmp.write_text(json.dumps(holder_info()) + "\n")
    try:
        try:
            os.link(tmp, guard)
        except FileExistsError:
            held = read_lock(guard)
            if held and is_stale(held):  # a reclaimer died holding it: the next turn may take it
                with contextlib.suppress(FileNotFoundError):
                    os.rename(guard, guard.with_name(f"{guard.name}.stale.{socket.gethostname()}.{os.getpid()}"))
            return False
        try:
            if read_lock(path) == stale:
                path.unlink(missing_ok=True)
                return True
            return False
        finally:
            guard.unlink(missing_ok=True)
    finally:
        tmp.unlink(missing_ok=True)
        for aside in path.parent.glob(f"{guard.name}.stale.{socket.gethostname()}.{os.getpid()}"):
            aside.unlink(missing_ok=True)


def try_claim(path) -> bool:
    """Take the lock at ``path`` for this process; False when another live worker holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mine = holder_info()
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}")
    tmp.write_text(json.dumps(mine) + "\n")
    try:
        for _ in range(5):
            try:
                os.link(tmp, path)              # atomic create-if-absent, like O_EXCL, with the content in it
                return True
            except FileExistsError:
                holder = read_lock(path)
                if holder is None:              # released meanwhile
                    continue
                if not is_stale(holder):
                    return False
                _reclaim(path, holder)          # then try again: whoever links first wins
        return False
    finally:
        tmp.unlink(missing_ok=True)


def release(path) -> None:
    """Remove the lock at ``path`` if this process holds it."""
    holder = read_lock(path)
    if holder and holder.get("host") == socket.gethostname() and holder.get("pid") == os.getpid():
        Path(path).unlink(missing_ok=True)


# ---- the worker loop ----------------------------------------------------------------------------------------------
@dataclass
class WorkResult:
    ran: list[str]
    skipped: list[str]          # finished already
    busy: list[str]             # held by another worker


def cell_timeout() -> float:
    """Deadline of one multi-process cell run: ``$ESC2C_CELL_TIMEOUT`` seconds, default two days."""
    try:
        return float(os.environ.get("ESC2C_CELL_TIMEOUT", 2 * 24 * 3600))
    except ValueError:
        raise Esc2cError(f"ESC2C_CELL_TIMEOUT must be a number of seconds "
                         f"(got {os.environ['ESC2C_CELL_TIMEOUT']!r})") from None


def _import_this_esc2c(env: dict) -> None:
    """A child process's environment: when esc2c runs from a checkout, that checkout first on PYTHONPATH so the
    child imports the same esc2c (the environment's editable install may be another checkout's); an installed
    copy needs nothing, the child's interpreter finds it in site-packages (esc2c.resources.source_checkout)."""
    root = source_checkout()
    if root is not None:
        rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join([str(root), *rest])


def _run_cell_torchrun(cfg: CompressConfig, cell: Cell, out_dir, procs: int, log_file) -> dict:
    """The cell as ``torchrun --standalone --nproc-per-node procs -m esc2c compress`` (data-parallel stages, see
    esc2c.compress.distributed), with the cell's config written beside its directory."""
    cdir = cell_dir(out_dir, cell)
    cfg_path = cdir.with_name(cell.name + ".yaml")
    atomic_write_text(cfg_path, yaml.safe_dump(cfg.to_dict(), sort_keys=True))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}",
           "-m", "esc2c", "compress", "--config", str(cfg_path), "-o", str(cdir)]
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, cfg.threads)))
    _import_this_esc2c(env)
    r = proc.run(cmd, f"experiment cell {cell.name} ({procs} processes)", cell_timeout(), merge_stderr=True,
                 env=env)
    log_file.write(r.out)
    if r.returncode != 0:
        raise Esc2cError(f"experiment cell {cell.name}: {procs}-process compress failed (exit {r.returncode}); "
                         f"last output:\n{proc.tail(r.out)}")
    return json.loads((cdir / REPORT).read_text())


def run_cell(cfg: CompressConfig, cell: Cell, out_dir, log: Callable[[str], None], procs: int = 1) -> dict:
    """One compress run into the cell's directory; its output (epoch lines included) goes to the cell's .log
    file, the pipeline's messages also to ``log`` with the cell's name. ``procs`` > 1 runs it data-parallel
    in that many processes (torchrun), each with ``cfg.threads`` torch threads."""
    cdir = cell_dir(out_dir, cell)
    cdir.parent.mkdir(parents=True, exist_ok=True)
    console = sys.stdout
    with open(cdir.with_name(cell.name + CELL_LOG), "a", buffering=1) as f:
        if procs > 1:
            f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {socket.gethostname()} pid {os.getpid()} "
                    f"torchrun x {procs}\n")
            return _run_cell_torchrun(cfg, cell, out_dir, procs, f)
        def both(msg: str) -> None:
            f.write(msg + "\n")
            with contextlib.redirect_stdout(console):
                log(f"[{cell.name}] {msg}")

        f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {socket.gethostname()} pid {os.getpid()}\n")
        with contextlib.redirect_stdout(f):
            return pipeline.run(cfg, cdir, log=both, progress=False)


def work(out_dir, base: CompressConfig, cells: list[Cell], threads: int | None = None,
         log: Callable[[str], None] = print, cell_procs: int = 1) -> WorkResult:
    """Run every cell of ``cells`` that is neither finished nor held by another worker (each in
    ``cell_procs`` data-parallel processes)."""
    res = WorkResult([], [], [])
    for cell in cells:
        cfg = cell_config(base, cell, threads)
        if finished(out_dir, cell, cfg):
            res.skipped.append(cell.name)
            continue
        lock = lock_path(out_dir, cell)
        if not try_claim(lock):
            holder = read_lock(lock) or {}
            log(f"[{cell.name}] held by {holder.get('host', '?')} pid {holder.get('pid', '?')}: skipped")
            res.busy.append(cell.name)
            continue
        try:
            if finished(out_dir, cell, cfg):    # finished by another worker between the check and the claim
                res.skipped.append(cell.name)
                continue
            t0 = time.time()
            log(f"[{cell.name}] running: train folds {cfg.train_folds}, test fold {cfg.val_folds}, seed {cfg.seed}")
            run_cell(cfg, cell, out_dir, log, cell_procs)
            log(f"[{cell.name}] finished in {time.time() - t0:.0f} s")
            res.ran.append(cell.name)
        finally:
            release(lock)
    return res


def rotated(cells: list[Cell], k: int, n: int) -> list[Cell]:
    """Worker k of n starts at its own share of the cells, so workers rarely contend for a lock."""
    start = (k * len(cells)) // n
    return cells[start:] + cells[:start]


def run_grid(out_dir, base: CompressConfig, cells: list[Cell], jobs: int = 1, threads: int | None = None,
             log: Callable[[str], None] = print, cell_procs: int = 1, child_env: dict | None = None) -> None:
    """Run the grid with ``jobs`` worker processes (1: in this process), each cell data-parallel over
    ``cell_procs`` processes (torchrun). ``threads`` torch threads in all (default: the config's) are split
    among the workers and their processes. With ``child_env`` (the environment of a rank of a torchrun-launched
    experiment, see :mod:`esc2c.experiment.ranks`) every cell runs in a worker process with that environment,
    never in this one."""
    if jobs < 1:
        raise Esc2cError(f"--jobs must be >= 1 (got {jobs})")
    if cell_procs < 1:
        raise Esc2cError(f"--cell-procs must be >= 1 (got {cell_procs})")
    check_base(base)
    prepare(out_dir, base)
    total = int(threads or base.threads)
    pending = [c for c in cells if not finished(out_dir, c, cell_config(base, c))]
    if len(cells) > len(pending):
        log(f"{len(cells) - len(pending)} of {len(cells)} cells finished already")
    n = min(jobs, len(pending))
    if n < 1:
        return
    if n == 1 and child_env is None:
        work(out_dir, base, pending, max(1, total // cell_procs), log, cell_procs)
        return
    per = max(1, total // (n * cell_procs))
    log(f"{len(pending)} cells, {n} worker process{'es' if n > 1 else ''}, {per} torch thread(s) each")
    env = dict(os.environ if child_env is None else child_env, OMP_NUM_THREADS=str(per), MKL_NUM_THREADS=str(per))
    _import_this_esc2c(env)
    procs = []
    for k in range(n):
        order = ",".join(c.name for c in rotated(pending, k, n))
        p = subprocess.Popen([sys.executable, "-m", "esc2c.experiment.worker", str(out_dir), "--cells", order],
                             stdin=subprocess.PIPE, env=env, text=True)
        p.stdin.write(json.dumps({"config": base.to_dict(), "threads": per, "cell_procs": cell_procs}))
        p.stdin.close()
        procs.append(p)
    failed = [(k, p.wait()) for k, p in enumerate(procs)]
    failed = [(k, rc) for k, rc in failed if rc != 0]
    if failed:
        raise Esc2cError(f"{len(failed)} of {n} worker processes failed (exit codes "
                         f"{', '.join(str(rc) for _, rc in failed)}); each cell's output is in "
                         f"{Path(out_dir) / CELLS_DIR}/<cell>{CELL_LOG}; run again to resume")
