"""The ``esc2c compress`` configuration: one dataclass, read from YAML or TOML, overridden from the CLI.

Every field has a default; the defaults are the small synthetic run that finishes in minutes on two CPU
cores. ``configs/`` holds the paper's settings (Adam, batch 64, lr 1e-3, weight decay 5e-4, epochs
100 / 50 / 5 / 50, 97 % pruning) for VGG-11 and ResNet-18 on ESC-50 and UrbanSound8K.

Features follow the dataset: ``features`` lists only what differs from :data:`DATASET_FEATURES` (whole 4 s
UrbanSound8K clips, whole 5 s ESC-50 clips, 40 mels; short clips for the synthetic set).

The training recipe (every stage): optional time shift, level and equaliser changes, SpecAugment masks, mixup
and label smoothing (:mod:`esc2c.compress.augment`) and a warm-up + cosine learning-rate schedule
(:mod:`esc2c.compress.schedule`). A preset names a set of field values applied before the config file and the
command line (:data:`PRESETS`): ``esc2c`` the defaults, ``paper`` the paper's settings exactly, ``augment`` the
augmented recipe, ``robust`` level and equaliser changes with a cosine schedule (the default for real audio,
:data:`DATASET_PRESETS`).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from esc2c.compiler.emit import board_limits
from esc2c.compress.augment import AugmentConfig
from esc2c.compress.schedule import SCHEDULES, SELECT
from esc2c.errors import Esc2cError
from esc2c.features import FeatureSpec
from esc2c.contract import ARCHS, ROUNDING_MODES

DATASET_CHOICES = ("synthetic", "esc50", "urbansound8k")

# Each dataset's default log-mel (FeatureSpec fields; the rest keep FeatureSpec's defaults: 16 kHz, hann, Slaney).
DATASET_FEATURES = {
    "synthetic": {"n_mels": 32, "clip_seconds": 2.0, "n_fft": 512, "win_length": 512, "hop_length": 512},
    "urbansound8k": {"n_mels": 40, "clip_seconds": 4.0, "n_fft": 1024, "win_length": 1024, "hop_length": 512},
    "esc50": {"n_mels": 40, "clip_seconds": 5.0, "n_fft": 1024, "win_length": 1024, "hop_length": 512},
}

# Training recipes. esc2c is the paper's plain recipe with the pruned students at 3x the rate; augment adds
# on-the-fly augmentation, label smoothing and a warm-up + cosine schedule; robust changes each clip's level
# and colour (random gain and equaliser), with a cosine schedule and the last epoch kept. Measured on
# UrbanSound8K (configs/experiment_us8k_cpu_robust.yaml against experiment_us8k_cpu_150k.yaml, the same 9
# cells): robust lifts the teacher by 7.0 points (95 % interval [+2.9, +11.0]) and the students by 4.8-9.4;
# augment lost 5.6 points on the teacher at 20 epochs (benchmarks/bench_recipe.py). On the synthetic set the
# cosine schedule with the last epoch kept cost the 97 %-pruned students 22 points (one run; the level and
# equaliser changes alone cost 1), so that set keeps esc2c (DATASET_PRESETS).
PRESETS = {
    "esc2c": {},
    "paper": {"student_lr_factor": 1.0},
    "augment": {"time_shift": 0.25, "freq_masks": 2, "freq_mask": 0.15, "time_masks": 2, "time_mask": 0.1,
                "mixup_alpha": 0.2, "label_smoothing": 0.1, "lr_schedule": "cosine", "warmup_epochs": 1.0},
    "robust": {"gain_db": 6.0, "eq_db": 6.0, "lr_schedule": "cosine", "epoch_selection": "last"},
}
# The preset a run gets when neither its config file nor its command line names one.
DATASET_PRESETS = {"synthetic": "esc2c", "urbansound8k": "robust", "esc50": "robust"}


# What ``--no-augment`` sets: every change to the training inputs off (label smoothing and the schedule stay).
NO_INPUT_AUGMENT = {"time_shift": 0.0, "freq_masks": 0, "time_masks": 0, "mixup_alpha": 0.0, "gain_db": 0.0,
                    "eq_db": 0.0, "freq_shift": 0.0, "time_stretch": 0.0}


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
    features: dict = field(default_factory=dict)   # FeatureSpec fields over DATASET_FEATURES[dataset]
    cache_dir: str | None = None
    # model
    arch: str = "small"
    width: float = 1.0
    dropout: float = 0.0           # dropout after each hidden layer of the teacher's head (VGG-11); its students
                                   # inherit it with the head (the INT8 models run without it)
    # schedule (epochs per stage)
    epochs_teacher: int = 10
    epochs_prune: int = 30         # PoKD fine-tuning of the pruned model (M_PoKD)
    epochs_qat_ta: int = 2         # M_OriQ: quantized teacher assistant trained by PoKD from M_Ori
    epochs_qakd: int = 15          # M_QaKD: quantized M_PoKD trained by PoKD from M_OriQ
    prune_ratio: float = 0.97
    # optimisation (the paper: Adam, batch 64, lr 1e-3, weight decay 5e-4)
    batch_size: int = 64
    lr: float = 1e-3
    # The INT8 teacher assistant M_OriQ trains at qat_ta_lr. The paper uses lr there too, but the QAT model has
    # BatchNorm folded into its convs: without BN to absorb them, Adam steps of 1e-3 knock the trained VGG-11
    # teacher from 98.6 % to 79 % training accuracy in its first QAT epoch, and QaKD then distils that damaged
    # model; 1e-4 keeps it at 99 %. (The pruned students show no such drop and keep lr.)
    qat_ta_lr: float = 1e-4
    weight_decay: float = 5e-4
    student_lr_factor: float = 3.0  # the pruned FP32 students (M_Pru, M_PoKD, KD baselines) train at this x lr
    temperature: float = 4.0
    calib_batches: int = 8
    # training recipe (esc2c.compress.augment, esc2c.compress.schedule): off by default, preset "augment" sets it
    preset: str = "esc2c"
    time_shift: float = 0.0        # random roll of each clip along time, up to this fraction of its frames
    freq_masks: int = 0            # SpecAugment: frequency masks per clip, each up to freq_mask of the mels
    freq_mask: float = 0.15
    time_masks: int = 0            # SpecAugment: time masks per clip, each up to time_mask of the frames
    time_mask: float = 0.1
    mixup_alpha: float = 0.0       # mixup Beta(alpha, alpha); 0 = off
    label_smoothing: float = 0.0
    gain_db: float = 0.0           # random level change per clip, up to this many dB either way
    eq_db: float = 0.0             # random smooth equaliser per clip (FilterAugment), up to this many dB either way
    eq_points: int = 3             # the equaliser's random inner control points along the mel axis
    freq_shift: float = 0.0        # random shift of each clip along the mel axis, up to this fraction of the mels
    time_stretch: float = 0.0      # random time resampling of each clip at a rate within 1 +- this
    lr_schedule: str = "constant"  # "cosine" (linear warm-up, then cosine) or "constant"
    warmup_epochs: float = 0.0
    epoch_selection: str = "best"  # each stage keeps its "best" epoch on the selection set, or its "last"
    ema_decay: float = 0.0         # > 0: every stage scores and keeps an exponential moving average of its weights
    # outputs and extras
    baselines: bool = True         # M_Qua (QAT with CE only) and DirectKD (M_Qua distilled from M_Ori)
    ratio_sweep: list[float] = field(default_factory=lambda: [0.5, 0.7, 0.8, 0.9, 0.95])
    rounding: str = "double"
    device: str = "cpu"
    seed: int = 0
    threads: int = 2
    # CUP targets and budgets (0 / None: not set). target_params: kept deployed parameters (replaces
    # prune_ratio). board: prune further until the INT8 model fits it (max_flash / max_ram default to the
    # board's, max_latency_ms is the compiler's cost-model estimate at 216 MHz). channel_multiple /
    # min_channels: kept widths per layer (0: 4 and 8 when a board is named, else 1 and 1).
    target_params: int = 0
    board: str | None = None
    max_flash: int = 0
    max_ram: int = 0
    max_latency_ms: float = 0.0
    channel_multiple: int = 0
    min_channels: int = 0
    # experiments (esc2c experiment) and the Table 1 KD baselines
    cv_folds: list[int] = field(default_factory=list)     # folds `esc2c experiment --folds cv` tests in turn
    kd_baselines: list[str] = field(default_factory=list)  # extra FP32 students from M_Pru's start, from M_Ori

    def feature_spec(self) -> FeatureSpec:
        """The dataset's default features updated with ``features``."""
        try:
            return FeatureSpec(**{**DATASET_FEATURES.get(self.dataset, {}), **self.features})
        except TypeError as e:
            raise Esc2cError(f"config field 'features': {e}") from None

    def augment(self, spec: FeatureSpec | None = None) -> AugmentConfig:
        """The training recipe's augmentation; ``spec`` (the normalised feature spec) turns dB into feature units."""
        return AugmentConfig(time_shift=self.time_shift, freq_masks=self.freq_masks, freq_mask=self.freq_mask,
                             time_masks=self.time_masks, time_mask=self.time_mask, mixup_alpha=self.mixup_alpha,
                             label_smoothing=self.label_smoothing, gain_db=self.gain_db, eq_db=self.eq_db,
                             eq_points=self.eq_points, freq_shift=self.freq_shift,
                             time_stretch=self.time_stretch, db_scale=1.0 / spec.std if spec is not None else 1.0)

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
        if self.arch not in ARCHS:
            bad("arch", f"unknown architecture {self.arch!r} (choose {', '.join(ARCHS)})")
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
        if not 0.0 <= float(self.dropout) < 1.0:
            bad("dropout", f"must be in [0, 1) (got {self.dropout})")
        if self.dropout and self.arch != "vgg11":
            bad("dropout", f"the {self.arch} head has no hidden layers to drop from (vgg11 has two)")
        for name in ("lr", "qat_ta_lr", "temperature", "student_lr_factor"):
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
        if self.preset not in PRESETS:
            bad("preset", f"unknown preset {self.preset!r} (choose {', '.join(PRESETS)})")
        if self.lr_schedule not in SCHEDULES:
            bad("lr_schedule", f"must be one of {', '.join(SCHEDULES)} (got {self.lr_schedule!r})")
        if self.epoch_selection not in SELECT:
            bad("epoch_selection", f"must be one of {', '.join(SELECT)} (got {self.epoch_selection!r})")
        if float(self.warmup_epochs) < 0:
            bad("warmup_epochs", f"must be >= 0 (got {self.warmup_epochs})")
        if not 0.0 <= float(self.ema_decay) < 1.0:
            bad("ema_decay", f"must be in [0, 1) (0: off) (got {self.ema_decay})")
        self.augment()
        self.feature_spec()
        for name in ("target_params", "max_flash", "max_ram", "channel_multiple", "min_channels"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                bad(name, f"must be an integer >= 0 (0: not set) (got {v!r})")
        if float(self.max_latency_ms) < 0:
            bad("max_latency_ms", f"must be >= 0 (0: no limit) (got {self.max_latency_ms})")
        if self.board is None:
            for name in ("max_flash", "max_ram", "max_latency_ms"):
                if getattr(self, name):
                    bad(name, "is a board budget: name the board too (board / --board)")
        else:
            try:
                flash, ram = board_limits(self.board)
            except Esc2cError as e:
                bad("board", str(e))
            for name, limit in (("max_flash", flash), ("max_ram", ram)):
                if getattr(self, name) > limit:
                    bad(name, f"{getattr(self, name)} B is more than {self.board} has ({limit} B)")
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
            import tomllib  # stdlib from Python 3.11; only TOML configs need it
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
    """Defaults <- preset <- config file (YAML/TOML, optional) <- overrides (CLI; None values are ignored).

    The preset is the one the overrides name, else the file's, else the dataset's (:data:`DATASET_PRESETS`). A
    ``features`` mapping from the command line updates the file's (both only list what differs from the
    dataset's defaults)."""
    values: dict = {}
    if path is not None:
        p = Path(path)
        for k, v in _read(p).items():
            if k not in FIELDS:
                raise Esc2cError(f"{p}: unknown config field {k!r} (known: {', '.join(sorted(FIELDS))})")
            values[k] = _coerce(k, v, str(p))
    cli: dict = {}
    for k, v in (overrides or {}).items():
        if v is None:
            continue
        if k not in FIELDS:
            raise Esc2cError(f"unknown config override {k!r}")
        cli[k] = _coerce(k, v, "command line")
    if "features" in cli and "features" in values:
        cli["features"] = {**values["features"], **cli["features"]}
    dataset = cli.get("dataset", values.get("dataset", CompressConfig.dataset))
    preset = cli.get("preset", values.get("preset", DATASET_PRESETS.get(dataset, "esc2c")))
    if preset not in PRESETS:
        raise Esc2cError(f"config field 'preset': unknown preset {preset!r} (choose {', '.join(PRESETS)})")
    return CompressConfig(**{**PRESETS[preset], **values, **cli, "preset": preset}).validate()


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
