"""The ``esc2c compress`` configuration: one dataclass, read from YAML or TOML, overridden from the CLI.

Every field has a default; the defaults are the small synthetic run that finishes in minutes on two CPU
cores. ``configs/`` holds the paper's settings (Adam, batch 64, lr 1e-3, weight decay 5e-4, epochs
100 / 50 / 5 / 50, 97 % pruning) for VGG-11 and ResNet-18 on ESC-50 and UrbanSound8K.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from esc2c.errors import Esc2cError
from esc2c.features import FeatureSpec
from esc2c.quant.intparams import ROUNDING_MODES

DATASET_CHOICES = ("synthetic", "esc50", "urbansound8k")


@dataclass
class CompressConfig:
    # data
    dataset: str = "synthetic"
    data_dir: str | None = None
    train_folds: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    val_folds: list[int] = field(default_factory=lambda: [5])
    holdout: float = 0.0           # > 0: pick each stage's best epoch on this fraction of the training folds
                                   # (whole recordings held out), so val_folds stay an untouched test set
    synthetic_per_class: int = 40
    features: dict = field(default_factory=lambda: {"n_mels": 32, "clip_seconds": 2.0, "n_fft": 512,
                                                    "win_length": 512, "hop_length": 512})
    cache_dir: str | None = None
    # model
    arch: str = "small"
    width: float = 0.5
    # schedule (epochs per stage)
    epochs_teacher: int = 10
    epochs_prune: int = 8          # PoKD fine-tuning of the pruned model (M_PoKD)
    epochs_qat_ta: int = 2         # M_OriQ: quantized teacher assistant trained by PoKD from M_Ori
    epochs_qakd: int = 8           # M_QaKD: quantized M_PoKD trained by PoKD from M_OriQ
    prune_ratio: float = 0.8
    # optimisation (the paper: Adam, batch 64, lr 1e-3, weight decay 5e-4)
    batch_size: int = 64
    lr: float = 1e-3
    # The INT8 teacher assistant M_OriQ trains at qat_ta_lr. The paper uses lr there too, but the QAT model has
    # BatchNorm folded into its convs: without BN to absorb them, Adam steps of 1e-3 knock the trained VGG-11
    # teacher from 98.6 % to 79 % training accuracy in its first QAT epoch, and QaKD then distils that damaged
    # model; 1e-4 keeps it at 99 %. (The pruned students show no such drop and keep lr.)
    qat_ta_lr: float = 1e-4
    weight_decay: float = 5e-4
    temperature: float = 4.0
    calib_batches: int = 8
    # outputs and extras
    baselines: bool = True         # M_Qua (QAT with CE only) and DirectKD (M_Qua distilled from M_Ori)
    ratio_sweep: list[float] = field(default_factory=lambda: [0.5, 0.7, 0.8, 0.9, 0.95])
    rounding: str = "double"
    device: str = "cpu"
    seed: int = 0
    threads: int = 2
    # experiments (esc2c experiment) and the Table 1 KD baselines
    cv_folds: list[int] = field(default_factory=list)     # folds `esc2c experiment --folds cv` tests in turn
    kd_baselines: list[str] = field(default_factory=list)  # extra FP32 students from M_Pru's start, from M_Ori

    def feature_spec(self) -> FeatureSpec:
        try:
            return FeatureSpec(**self.features)
        except TypeError as e:
            raise Esc2cError(f"config field 'features': {e}") from None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def validate(self) -> "CompressConfig":
        def bad(name, why):
            raise Esc2cError(f"config field {name!r}: {why}")

        if self.dataset not in DATASET_CHOICES:
            bad("dataset", f"unknown dataset {self.dataset!r} (choose {', '.join(DATASET_CHOICES)})")
        if self.dataset != "synthetic" and not self.data_dir:
            bad("data_dir", f"dataset {self.dataset!r} needs --data-dir (the folder with its metadata and audio)")
        for name in ("train_folds", "val_folds"):
            v = getattr(self, name)
            if not isinstance(v, list) or not v or not all(isinstance(f, int) and f >= 1 for f in v):
                bad(name, f"must be a non-empty list of fold numbers >= 1 (got {v!r})")
        if set(self.train_folds) & set(self.val_folds):
            bad("val_folds", f"folds {sorted(set(self.train_folds) & set(self.val_folds))} are also training folds")
        for name in ("epochs_teacher", "epochs_prune", "epochs_qat_ta", "epochs_qakd", "calib_batches"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                bad(name, f"must be an integer >= 0 (got {v!r})")
        if self.calib_batches < 1:
            bad("calib_batches", "must be >= 1")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            bad("batch_size", f"must be an integer >= 1 (got {self.batch_size!r})")
        if not 0.0 <= float(self.prune_ratio) < 1.0:
            bad("prune_ratio", f"must be in [0, 1) (got {self.prune_ratio})")
        if float(self.width) <= 0:
            bad("width", f"must be > 0 (got {self.width})")
        for name in ("lr", "qat_ta_lr", "temperature"):
            if float(getattr(self, name)) <= 0:
                bad(name, f"must be > 0 (got {getattr(self, name)})")
        if not 0.0 <= float(self.holdout) < 1.0:
            bad("holdout", f"must be in [0, 1) (got {self.holdout})")
        if float(self.weight_decay) < 0:
            bad("weight_decay", f"must be >= 0 (got {self.weight_decay})")
        if self.rounding not in ROUNDING_MODES:
            bad("rounding", f"must be one of {', '.join(ROUNDING_MODES)} (got {self.rounding!r})")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            bad("device", f"must be cpu or cuda[:N] (got {self.device!r})")
        if not all(0.0 <= float(r) < 1.0 for r in self.ratio_sweep):
            bad("ratio_sweep", f"ratios must be in [0, 1) (got {self.ratio_sweep})")
        self.feature_spec()
        if not isinstance(self.cv_folds, list) or not all(isinstance(f, int) and f >= 1 for f in self.cv_folds) \
                or len(set(self.cv_folds)) != len(self.cv_folds) or len(self.cv_folds) == 1:
            bad("cv_folds", f"must be empty or a list of >= 2 distinct fold numbers >= 1 (got {self.cv_folds!r})")
        if not all(isinstance(m, str) and m in KD_BASELINES for m in self.kd_baselines) \
                or len(set(self.kd_baselines)) != len(self.kd_baselines):
            bad("kd_baselines", f"must be distinct names from {', '.join(KD_BASELINES)} (got {self.kd_baselines!r})")
        return self


FIELDS = {f.name: f for f in dataclasses.fields(CompressConfig)}


def _read(path: Path) -> dict:
    if not path.is_file():
        raise Esc2cError(f"{path}: config file not found")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".toml":
            import tomllib
            data = tomllib.loads(text)
        else:
            data = yaml.safe_load(text)
    except Exception as e:  # yaml.YAMLError, tomllib.TOMLDecodeError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise Esc2cError(f"{path}: not a valid {'TOML' if path.suffix.lower() == '.toml' else 'YAML'} file: "
                         f"{first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise Esc2cError(f"{path}: a config file must be a mapping of field: value")
    return data


def _coerce(name: str, value, where: str):
    f = FIELDS[name]
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    try:
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise TypeError
            return value
        if isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError
            return value
        if isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError
            return float(value)
        if isinstance(default, list):
            if not isinstance(value, list):
                raise TypeError
            return list(value)
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise TypeError
            return dict(value)
        if value is not None and not isinstance(value, str):
            raise TypeError
        return value
    except TypeError:
        raise Esc2cError(f"{where}: field {name!r} has the wrong type ({type(value).__name__}: {value!r})") from None


def load_config(path: str | None = None, overrides: dict | None = None) -> CompressConfig:
    """Defaults <- config file (YAML/TOML, optional) <- overrides (CLI; None values are ignored)."""
    values: dict = {}
    if path is not None:
        p = Path(path)
        for k, v in _read(p).items():
            if k not in FIELDS:
                raise Esc2cError(f"{p}: unknown config field {k!r} (known: {', '.join(sorted(FIELDS))})")
            values[k] = _coerce(k, v, str(p))
    for k, v in (overrides or {}).items():
        if v is None:
            continue
        if k not in FIELDS:
            raise Esc2cError(f"unknown config override {k!r}")
        values[k] = _coerce(k, v, "command line")
    if "features" in values:  # a partial features mapping updates the defaults
        merged = CompressConfig().features
        merged.update(values["features"])
        values["features"] = merged
    return CompressConfig(**values).validate()


def parse_folds(text: str | None) -> list[int] | None:
    """'1,2,3' -> [1, 2, 3] (None stays None)."""
    if text is None:
        return None
    try:
        folds = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise Esc2cError(f"folds must be comma-separated integers like 1,2 (got {text!r})") from None
    if not folds:
        raise Esc2cError(f"folds must name at least one fold (got {text!r})")
    return folds


# Table 1 KD baselines a config may ask for (``kd_baselines``): loss names of esc2c.compress.losses, each trained
# as its own stage of the same name (see esc2c.compress.pipeline)
KD_BASELINES = ("kd", "fitnet", "mhkd", "alpkd")
