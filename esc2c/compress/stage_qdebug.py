"""The quantization debugger (:mod:`esc2c.quant.debug`) on a compress run: its INT8 stages against the float
models they were built from, on (a seeded subset of) the validation data.

Each INT8 stage is the QAT of one float stage: ``qakd``, ``qat_ce`` and ``directkd`` quantize M_PoKD
(``pokd``), the teacher assistant ``qat_ta`` quantizes M_Ori (``teacher``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from esc2c.compress import qakd
from esc2c.compress.stages import DONE, MODEL_FILE, load_model
from esc2c.errors import Esc2cError
from esc2c.models.blocks import ESCNet
from esc2c.models.registry import build_from_config
from esc2c.quant import debug, qat

FLOAT_OF = {"qakd": "pokd", "qat_ce": "pokd", "directkd": "pokd", "qat_ta": "teacher"}
DEFAULT_INPUTS = 256


def pick(data, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(x, y): ``n`` clips of a FeatureSet (all when it has fewer), a seeded random choice in order."""
    if n < 1:
        raise Esc2cError(f"quant debug: the number of inputs must be at least 1, got {n}")
    idx = np.arange(len(data.y))
    if n < len(idx):
        idx = np.sort(np.random.default_rng(seed).choice(idx, n, replace=False))
    return data.x[idx], data.y[idx]


def debug_models(qnet: qat.QATNet, float_model: ESCNet, data, rounding: str, n: int = DEFAULT_INPUTS,
                 seed: int = 0, c_runner=None) -> debug.QuantDebug:
    x, y = pick(data, n, seed)
    return debug.debug_qat(qnet.cpu().eval(), float_model.cpu().eval(), x, y, rounding, c_runner=c_runner)


def for_report(qnet: qat.QATNet, float_model: ESCNet, data, rounding: str, n: int = DEFAULT_INPUTS,
               seed: int = 0) -> dict:
    """The ``quant_debug`` entry of a compress report (JSON-ready)."""
    return debug_models(qnet, float_model, data, rounding, n, seed).to_dict()


def is_run(path: str | Path) -> bool:
    return (Path(path) / "stages").is_dir()


def load_run_models(run_dir: str | Path, stage: str = "qakd") -> tuple[qat.QATNet, ESCNet, dict, dict]:
    """(QAT net of ``stage``, its float model, the run's config dict, its FeatureSpec dict) from a compress
    run directory; every missing or unfinished stage is named."""
    run = Path(run_dir)
    if stage not in FLOAT_OF:
        raise Esc2cError(f"quant debug: stage must be one of {', '.join(FLOAT_OF)}, got {stage!r}")
    paths = {}
    for s in (stage, FLOAT_OF[stage]):
        d = run / "stages" / s
        if not (d / DONE).is_file() or not (d / MODEL_FILE).is_file():
            raise Esc2cError(f"{d}: stage {s!r} of the run is not finished (no {DONE} and {MODEL_FILE})")
        paths[s] = d / MODEL_FILE
    try:
        ck = torch.load(paths[stage], map_location="cpu", weights_only=False)
        qnet = qakd.load_qat_state(build_from_config(ck["model_config"]), ck["qat_state"])
    except Esc2cError as e:
        raise Esc2cError(f"{paths[stage]}: {e}") from None
    except Exception as e:  # noqa: BLE001 - corrupt or foreign file
        raise Esc2cError(f"{paths[stage]}: not an esc2c QAT checkpoint ({type(e).__name__}: {e})") from None
    float_model, _ = load_model(paths[FLOAT_OF[stage]])
    if ck.get("config") is None or ck.get("spec") is None:
        raise Esc2cError(f"{paths[stage]}: the checkpoint keeps no run config / feature spec")
    qnet.drop_aux_heads()
    return qnet.eval(), float_model.eval(), ck["config"], ck["spec"]
