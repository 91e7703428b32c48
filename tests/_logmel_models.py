"""A small INT8 model for the raw-audio checks: the 'small' CNN trained for a few epochs on the log-mel
features (esc2c.features.logmel) of a handful of real clips, INT8 QAT-calibrated and exported as QDQ ONNX
with its FeatureSpec in the metadata (esc2c.quant.export), the way `esc2c compress` ends."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from esc2c import features as fe
from esc2c.features import FeatureSpec
from esc2c.logmel import python_frontend


def clip_files(shared_data: Path, dataset: str, k: int) -> list[Path]:
    """k clips spread over the dataset's first fold with audio (UrbanSound8K fold 1, ESC-50 fold 4)."""
    pattern = {"urbansound8k": "fold1/*.flac", "esc50": "4-*.flac"}[dataset]
    files = sorted((shared_data / dataset / "audio").glob(pattern))
    assert len(files) >= k, f"fewer than {k} clips in {shared_data / dataset}"
    return files[:: max(1, len(files) // k)][:k]


def label_of(path: Path) -> int:
    """Class id from the file name (UrbanSound8K: fsID-classID-occ-slice, ESC-50: fold-id-take-target)."""
    parts = path.stem.split("-")
    return int(parts[1]) if path.parent.name.startswith("fold") else int(parts[-1])


def make_model(path: Path, spec_seconds: float, pcms: list[np.ndarray], labels: list[int], n_classes: int,
               epochs: int = 15, seed: int = 0) -> FeatureSpec:
    """Train, calibrate and export the model to ``path``; returns its FeatureSpec (with the set's stats)."""
    from esc2c.models.registry import build_model
    from esc2c.quant.export import export_onnx
    from esc2c.quant.qat import QATNet, calibrate

    torch.manual_seed(seed)
    raw = FeatureSpec(clip_seconds=spec_seconds)
    audio = np.stack([fe.fix_length(p.astype(np.float64) / 32768.0, raw.n_samples) for p in pcms])
    x = fe.logmel(raw, audio)
    spec = raw.with_stats(float(x.mean()), float(x.std()))
    x = torch.from_numpy((x - spec.mean) / spec.std)[:, None].float()
    y = torch.tensor(labels)
    model = build_model("small", n_classes, width=0.25, in_shape=(1, spec.n_mels, spec.frames), aux=False)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    model.train()
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    model.eval()
    q = QATNet(model).drop_aux_heads()
    calibrate(q, [x])
    export_onnx(q, path, (1, spec.n_mels, spec.frames), feature_spec=spec,
                class_names=[str(i) for i in range(n_classes)])
    return spec


def read(paths, sample_rate: int = 16000) -> list[np.ndarray]:
    return [python_frontend.read_pcm(str(p), sample_rate) for p in paths]
