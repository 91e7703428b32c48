"""``esc2c compress``: audio -> log-mel -> teacher -> CUP -> PoKD -> INT8 QAT + QaKD -> model.onnx + report."""
from __future__ import annotations

import click

from esc2c.compress import distributed, pipeline
from esc2c.compress.config import DATASET_CHOICES, NO_INPUT_AUGMENT, PRESETS, load_config, parse_folds
from esc2c.compress.report import format_table
from esc2c.compress.schedule import SCHEDULES, SELECT
from esc2c.contract import ROUNDING_MODES


@click.command("compress")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="YAML or TOML config (see configs/); command-line options override it.")
@click.option("--dataset", type=click.Choice(DATASET_CHOICES), default=None,
              help="Dataset (default: the built-in synthetic sound set).")
@click.option("--data-dir", default=None, help="Folder of the dataset (metadata + audio).")
@click.option("--train-folds", default=None, help="Training folds, e.g. 1,2.")
@click.option("--val-folds", default=None, help="Validation folds, e.g. 3.")
@click.option("--arch", type=click.Choice(("small", "vgg11", "resnet18")), default=None)
@click.option("--width", type=float, default=None, help="Width multiplier of the teacher.")
@click.option("--prune-ratio", type=float, default=None, help="Fraction of parameters CUP removes (e.g. 0.97).")
@click.option("--epochs-teacher", type=int, default=None)
@click.option("--epochs-prune", type=int, default=None, help="Epochs of M_Pru fine-tuning and of PoKD.")
@click.option("--epochs-qat-ta", type=int, default=None, help="Epochs of the INT8 teacher assistant M_OriQ.")
@click.option("--epochs-qakd", type=int, default=None, help="Epochs of QaKD (and of the INT8 baselines).")
@click.option("--batch-size", type=int, default=None)
@click.option("--qat-ta-lr", type=float, default=None, help="Learning rate of the INT8 teacher assistant.")
@click.option("--holdout", type=float, default=None,
              help="Fraction of the training folds (whole recordings) that picks each stage's best epoch; "
                   "0 picks it on the validation folds.")
@click.option("--rounding", type=click.Choice(ROUNDING_MODES), default=None,
              help="Requantization rounding the deployed model is checked with (CMSIS-NN default: double).")
@click.option("--no-baselines", is_flag=True, default=False, help="Skip the M_Qua and DirectKD baselines.")
@click.option("--preset", type=click.Choice(tuple(PRESETS)), default=None,
              help="Training recipe (default: robust for UrbanSound8K and ESC-50, esc2c for the synthetic set): "
                   "robust (random level and equaliser changes per clip, cosine schedule, last epoch kept), esc2c "
                   "(the paper's plain Adam, pruned students at 3x lr), paper (the paper's settings exactly) or "
                   "augment (time shift, SpecAugment, mixup, label smoothing, warm-up + cosine).")
@click.option("--no-augment", is_flag=True, default=False,
              help="No time shift, level or equaliser changes, SpecAugment masks or mixup (label smoothing and "
                   "the schedule stay).")
@click.option("--mixup-alpha", type=float, default=None, help="mixup Beta(alpha, alpha); 0 turns mixup off.")
@click.option("--label-smoothing", type=float, default=None)
@click.option("--lr-schedule", type=click.Choice(SCHEDULES), default=None)
@click.option("--epoch-selection", type=click.Choice(SELECT), default=None,
              help="Each stage keeps its best epoch on the selection set (best) or its last epoch (last).")
@click.option("--ema-decay", type=click.FloatRange(min=0, max=1, max_open=True), default=None,
              help="Score and keep an exponential moving average of each stage's weights, updated every step "
                   "with this decay (e.g. 0.995); 0 turns it off.")
@click.option("--device", default=None, help="cpu or cuda.")
@click.option("--seed", type=int, default=None)
@click.option("-o", "--output", required=True, type=click.Path(),
              help="Run directory (stages resume from it).")
@click.option("--target-params", type=click.IntRange(min=1), default=None,
              help="Parameters CUP keeps (within 0.5 %), instead of --prune-ratio.")
@click.option("--board", default=None, help="Prune further until the INT8 model fits this board (e.g. stm32f746zg).")
@click.option("--max-flash", type=click.IntRange(min=1), default=None,
              help="Flash budget in bytes with --board (default: the board's).")
@click.option("--max-ram", type=click.IntRange(min=1), default=None,
              help="RAM budget in bytes with --board (default: the board's).")
@click.option("--max-latency-ms", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Latency budget with --board: the compiler's cost-model estimate at 216 MHz.")
@click.option("--channel-multiple", type=click.IntRange(min=1), default=None,
              help="Round kept channels per layer to this multiple (default: 4 with --board, else 1).")
@click.option("--min-channels", type=click.IntRange(min=1), default=None,
              help="Fewest channels CUP leaves in a layer (default: 8 with --board, else 1).")
@click.option("--force", is_flag=True, default=False,
              help="Use OUTPUT even when another esc2c command wrote it (never a directory of other files).")
def compress(config_path, dataset, data_dir, train_folds, val_folds, arch, width, prune_ratio, epochs_teacher,
             epochs_prune, epochs_qat_ta, epochs_qakd, batch_size, qat_ta_lr, holdout, rounding, no_baselines, preset,
             no_augment, mixup_alpha, label_smoothing, lr_schedule, epoch_selection, ema_decay, device, seed,
             output, target_params, board,
             max_flash, max_ram, max_latency_ms, channel_multiple, min_channels, force):
    """Run the whole compression framework and write OUTPUT/model.onnx, report.json and report.md."""

    overrides = {"dataset": dataset, "data_dir": data_dir, "train_folds": parse_folds(train_folds),
                 "val_folds": parse_folds(val_folds), "arch": arch, "width": width, "prune_ratio": prune_ratio,
                 "epochs_teacher": epochs_teacher, "epochs_prune": epochs_prune, "epochs_qat_ta": epochs_qat_ta,
                 "epochs_qakd": epochs_qakd, "batch_size": batch_size, "qat_ta_lr": qat_ta_lr,
                 "holdout": holdout, "rounding": rounding,
                 "baselines": False if no_baselines else None, "device": device, "seed": seed,
                 "preset": preset, "mixup_alpha": mixup_alpha, "label_smoothing": label_smoothing,
                 "lr_schedule": lr_schedule, "epoch_selection": epoch_selection, "ema_decay": ema_decay}
    if no_augment:
        overrides.update(NO_INPUT_AUGMENT)
    overrides.update({"target_params": target_params, "board": board, "max_flash": max_flash, "max_ram": max_ram,
                      "max_latency_ms": max_latency_ms, "channel_multiple": channel_multiple,
                      "min_channels": min_channels})
    cfg = load_config(config_path, overrides)
    rep = pipeline.run(cfg, output, log=click.echo, force=force)
    if distributed.launch_rank() == 0:          # under torchrun, rank 0 alone prints
        click.echo(format_table(rep))
