"""A small stage runner: named stages, each in its own directory, finished once and resumed when interrupted.

A stage is a function ``fn(ctx) -> StageResult`` (or ``(model, metrics)``). When it returns, the runner saves
``<run>/<stage>/model.pt`` (model config, state dict, metrics, FeatureSpec dict, run and stage settings) and
then writes the ``DONE`` marker, both atomically. Re-running:

* a stage with a ``DONE`` marker is skipped and its model is loaded from ``model.pt``;
* a stage without one runs again; training inside it resumes from ``ctx.train_checkpoint`` (the per-epoch
  checkpoint that :func:`esc2c.compress.train.train` writes when given that path), so an interrupted stage
  continues at its next epoch;
* a finished stage whose settings (``Stage.config``) or FeatureSpec differ from the current ones is an error:
  results are never mixed silently.

Stages that train something other than an ESCNet (e.g. a QAT wrapper) pass ``save``/``load`` functions.

Under a process group (``torchrun``, see :mod:`esc2c.compress.distributed`) rank 0 alone reads and writes the
run directory: it decides whether a stage is done, loads a finished stage and broadcasts its payload, and
after a stage it writes ``model.pt`` and ``DONE`` and broadcasts the payload it wrote, from which the other
ranks rebuild the stage's model - so every rank continues with rank 0's model and metrics. A ``parallel``
stage (training) runs on every rank; any other (e.g. pruning) runs on rank 0 while the rest wait.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from esc2c.compress import distributed
from esc2c.compress.train import save_atomic
from esc2c.errors import Esc2cError
from esc2c.fsutil import atomic_write_text
from esc2c.models.registry import build_from_config, model_config

DONE = "DONE"
MODEL_FILE = "model.pt"
TRAIN_FILE = "last.pt"


@dataclass
class StageResult:
    model: nn.Module
    metrics: dict = field(default_factory=dict)


@dataclass
class StageContext:
    name: str
    dir: Path
    run_dir: Path
    config: dict
    stage_config: dict
    spec: dict | None
    device: str
    results: dict[str, StageResult]

    @property
    def train_checkpoint(self) -> Path:
        """Pass this as ``train(..., checkpoint=...)`` to make the stage's training resumable."""
        return self.dir / TRAIN_FILE

    def checkpoint_extra(self) -> dict:
        """What every checkpoint of this stage carries besides the weights (pass to ``train``)."""
        return {"stage": self.name, "spec": self.spec, "config": self.config, "stage_config": self.stage_config}


@dataclass
class Stage:
    name: str
    fn: Callable[[StageContext], "StageResult | tuple[nn.Module, dict]"]
    config: dict = field(default_factory=dict)
    save: Callable[[nn.Module], dict] | None = None        # model -> payload entries (default: ESCNet config)
    load: Callable[[dict, StageContext], nn.Module] | None = None
    parallel: bool = True          # every rank runs it (data-parallel training); False: rank 0 only


def save_model(path: str | os.PathLike, model: nn.Module, metrics: dict | None = None, spec: dict | None = None,
               **extra) -> None:
    """Write an ESCNet checkpoint: model_config + state_dict + metrics + spec (+ extra entries)."""
    save_atomic({"model_config": model_config(model), "state_dict": model.state_dict(),
                 "metrics": metrics or {}, "spec": spec, **extra}, path)


def load_model(path: str | os.PathLike, map_location="cpu") -> tuple[nn.Module, dict]:
    """(ESCNet, checkpoint dict) from a file written by :func:`save_model` or a stage."""
    path = Path(path)
    if not path.is_file():
        raise Esc2cError(f"{path}: no such checkpoint")
    try:
        ck = torch.load(path, map_location=map_location, weights_only=False)
        model = build_from_config(ck["model_config"])
        model.load_state_dict(ck["state_dict"])
    except Esc2cError as e:
        raise Esc2cError(f"{path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - corrupt or foreign file
        raise Esc2cError(f"{path}: not an esc2c model checkpoint ({type(e).__name__}: {e})") from None
    return model, ck


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


class StageRunner:
    def __init__(self, run_dir: str | os.PathLike, config: dict | None = None, spec: dict | None = None,
                 device: str = "cpu", log: Callable[[str], None] = print):
        self.run_dir = Path(run_dir)
        self.config = _jsonable(config or {})
        self.spec = _jsonable(spec) if spec is not None else None
        self.device = device
        self.log = log
        self.results: dict[str, StageResult] = {}

    def stage_dir(self, name: str) -> Path:
        return self.run_dir / name

    def is_done(self, name: str) -> bool:
        return (self.stage_dir(name) / DONE).is_file()

    def _context(self, stage: Stage) -> StageContext:
        return StageContext(stage.name, self.stage_dir(stage.name), self.run_dir, self.config,
                            _jsonable(stage.config), self.spec, self.device, self.results)

    def _read_done(self, stage: Stage, ctx: StageContext) -> dict:
        path = ctx.dir / MODEL_FILE
        if not path.is_file():
            raise Esc2cError(f"{ctx.dir}: stage {stage.name!r} is marked done but {MODEL_FILE} is missing; "
                             f"delete {ctx.dir} to redo it")
        try:
            ck = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001 - truncated or foreign file: the user's to remove
            raise Esc2cError(f"{path}: stage {stage.name!r} is marked done but its checkpoint is unreadable "
                             f"({type(e).__name__}: {str(e)[:120]}); delete {ctx.dir} to redo it") from None
        if not isinstance(ck, dict):
            raise Esc2cError(f"{path}: stage {stage.name!r} is marked done but its checkpoint holds a "
                             f"{type(ck).__name__}, not an esc2c stage; delete {ctx.dir} to redo it")
        for key, now in (("stage_config", ctx.stage_config), ("spec", self.spec)):
            if ck.get(key) != now:
                raise Esc2cError(f"{ctx.dir}: stage {stage.name!r} was finished with a different {key} "
                                 f"({ck.get(key)} != {now}); use a new output directory or delete {ctx.dir}")
        return ck

    def _result(self, stage: Stage, ctx: StageContext, ck: dict) -> StageResult:
        """The stage's model rebuilt from its checkpoint payload."""
        if stage.load is not None:
            try:
                model = stage.load(ck, ctx)
            except Esc2cError:
                raise
            except Exception as e:  # noqa: BLE001 - a checkpoint missing entries
                raise Esc2cError(f"{ctx.dir / MODEL_FILE}: stage {stage.name!r} checkpoint does not load "
                                 f"({type(e).__name__}: {str(e)[:120]}); delete {ctx.dir} to redo it") from None
        else:
            try:
                model = build_from_config(ck["model_config"])
                model.load_state_dict(ck["state_dict"])
            except Esc2cError as e:
                raise Esc2cError(f"{ctx.dir / MODEL_FILE}: {e}") from None
            except Exception as e:  # noqa: BLE001 - corrupt or foreign file
                raise Esc2cError(f"{ctx.dir / MODEL_FILE}: not an esc2c model checkpoint "
                                 f"({type(e).__name__}: {e})") from None
        return StageResult(model, ck.get("metrics", {}))

    def _call(self, stage: Stage, ctx: StageContext) -> StageResult:
        out = stage.fn(ctx)
        res = out if isinstance(out, StageResult) else StageResult(*out)
        res.metrics = _jsonable(res.metrics)
        return res

    def _write(self, stage: Stage, ctx: StageContext, res: StageResult) -> dict:
        """Write model.pt, then DONE; returns the payload written (rank 0)."""
        payload = stage.save(res.model) if stage.save is not None else {
            "model_config": model_config(res.model), "state_dict": res.model.state_dict()}
        ck = {**payload, "metrics": res.metrics, **ctx.checkpoint_extra()}
        save_atomic(ck, ctx.dir / MODEL_FILE)
        atomic_write_text(ctx.dir / DONE, json.dumps({"stage": stage.name, "metrics": res.metrics},
                                                     indent=1) + "\n")
        if ctx.train_checkpoint.exists():
            ctx.train_checkpoint.unlink()
        return ck

    def run_stage(self, stage: Stage) -> StageResult:
        ctx = self._context(stage)
        main = distributed.is_main()
        res = None
        if distributed.broadcast_object(self.is_done(stage.name) if main else None):
            self.log(f"[{stage.name}] done already: loading {ctx.dir / MODEL_FILE}")
            ck = distributed.on_main(lambda: self._read_done(stage, ctx))
        else:
            if main:
                ctx.dir.mkdir(parents=True, exist_ok=True)
                self.log(f"[{stage.name}] " + ("resuming" if ctx.train_checkpoint.exists() else "running"))
            if stage.parallel:
                res = self._call(stage, ctx)
                ck = distributed.on_main(lambda: self._write(stage, ctx, res))
            else:
                def alone():
                    nonlocal res
                    res = self._call(stage, ctx)
                    return self._write(stage, ctx, res)
                ck = distributed.on_main(alone)
        if res is None or not main:
            res = self._result(stage, ctx, ck)
        self.results[stage.name] = res
        return res

    def run(self, stages: list[Stage]) -> dict[str, StageResult]:
        names = [s.name for s in stages]
        if len(set(names)) != len(names) or any(not n or "/" in n or n.startswith(".") for n in names):
            raise Esc2cError(f"stage names must be unique plain names (got {names})")
        for s in stages:
            self.run_stage(s)
        return self.results
