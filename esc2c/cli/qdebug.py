"""``esc2c qdebug DIR``: the per-layer quantization debugger on a compress run or an emitted project."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from esc2c.compiler import c_qdebug as cq
from esc2c.compress import stage_qdebug as rq
from esc2c.compress.config import CompressConfig
from esc2c.compress.pipeline import load_data
from esc2c.contract import DEFAULT_ROUNDING, ROUNDING_MODES
from esc2c.errors import Esc2cError
from esc2c.quant import debug_report

STAGES = ("qakd", "qat_ce", "directkd", "qat_ta")


@click.command("qdebug")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--inputs", "n_inputs", type=click.IntRange(1, 100000), default=256, show_default=True,
              help="inputs compared: validation clips of a run (a seeded choice), synthetic clips for a project")
@click.option("--stage", type=click.Choice(STAGES), default="qakd", show_default=True,
              help="INT8 stage of the run, compared with the float stage it was quantized from "
                   "(pokd, or teacher for qat_ta)")
@click.option("--run", "run_dir", default=None, type=click.Path(file_okay=False),
              help="for an emitted project: the compress run its model.onnx comes from (float model, "
                   "validation data)")
@click.option("--rounding", type=click.Choice(ROUNDING_MODES), default=None,
              help="requantization rounding (default: the run's, or the project's)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-o", "--output", default=None, type=click.Path(file_okay=False),
              help="folder for quant_debug.png and quant_debug.json (default: DIRECTORY)")
def qdebug_cmd(directory, n_inputs, stage, run_dir, rounding, seed, output):
    """Per layer, float vs fake-quant vs integer program (vs the C of an emitted project): SQNR, max error,
    int8 agreement. DIRECTORY is a compress run (esc2c compress -o) or an emitted project (esc2c emit -o)."""

    d = Path(directory)
    if not d.is_dir():
        raise Esc2cError(f"{d}: no such directory")
    if cq.is_project(d):
        proj = cq.load_project(d)
        rounding = rounding or proj.rounding
        proj.build(rounding)
        if run_dir is not None:
            qnet, float_model, cfg, spec = rq.load_run_models(run_dir, stage)
            va = _validation_data(run_dir, cfg, spec)
            why = cq.same_program(qnet.integer_program(tuple(va.x.shape[1:])), proj.program)
            if why is not None:
                raise Esc2cError(f"{d / 'model.onnx'} is not the {stage} model of {run_dir}: {why}")
            qd = rq.debug_models(qnet, float_model, va, rounding, n_inputs, seed, c_runner=proj.run_c)
        else:
            qd = cq.debug_project(proj, n_inputs, rounding, seed)
        title = f"{d.name}: C vs integer program" + (" vs float" if run_dir else "")
    elif rq.is_run(d):
        if run_dir is not None:
            raise Esc2cError("--run is for an emitted project; DIRECTORY is already a compress run")
        qnet, float_model, cfg, spec = rq.load_run_models(d, stage)
        va = _validation_data(d, cfg, spec)
        qd = rq.debug_models(qnet, float_model, va, rounding or cfg.get("rounding", DEFAULT_ROUNDING), n_inputs, seed)
        title = f"{stage} vs {rq.FLOAT_OF[stage]}: quantization error per layer"
    else:
        raise Esc2cError(f"{d}: neither a compress run (no stages/) nor an emitted project (no CMakeLists.txt, "
                         "model.onnx and esc2c.json)")
    out = Path(output) if output else d
    out.mkdir(parents=True, exist_ok=True)
    data = debug_report.write(qd, out / "quant_debug.json", out / "quant_debug.png", title)
    click.echo(debug_report.format_table(data))
    for note in data["notes"]:
        click.echo(f"note: {note}")
    click.echo(f"wrote {out / 'quant_debug.png'} and {out / 'quant_debug.json'}")


def _validation_data(run_dir, cfg_dict: dict, spec_dict: dict):
    """The run's validation folds, normalised with its training folds' statistics (as the run saw them)."""

    known = {f.name for f in dataclasses.fields(CompressConfig)}
    try:
        cfg = CompressConfig(**{k: v for k, v in cfg_dict.items() if k in known}).validate()
    except TypeError as e:
        raise Esc2cError(f"{run_dir}: the run's config cannot be read back ({e})") from None
    _, _, va, spec = load_data(cfg, log=lambda _msg: None)
    if json.loads(json.dumps(spec.to_dict())) != json.loads(json.dumps(spec_dict)):
        raise Esc2cError(f"{run_dir}: the data now gives other features than the run was trained on "
                         f"({spec.to_dict()} != {spec_dict})")
    return va
