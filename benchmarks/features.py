"""Time log-mel feature extraction over a dataset's folds: cold (decode + resample + log-mel, cache written)
and warm (loaded from the cache). Prints seconds and clips per second.

    .venv/bin/python benchmarks/features.py --dataset urbansound8k --data-dir ../shared/data/urbansound8k --folds 1,2,3
"""
from __future__ import annotations

import argparse
import tempfile
import time
import warnings

from esc2c.data import load_features
from esc2c.features import FeatureSpec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="urbansound8k")
    ap.add_argument("--data-dir", default="../shared/data/urbansound8k")
    ap.add_argument("--folds", default="1,2,3", help="comma-separated official folds, or 'all'")
    ap.add_argument("--clip-seconds", type=float, default=FeatureSpec.clip_seconds)
    args = ap.parse_args()
    folds = None if args.folds == "all" else [int(f) for f in args.folds.split(",")]
    spec = FeatureSpec(clip_seconds=args.clip_seconds)
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        fs = load_features(args.dataset, args.data_dir, folds, spec, cache_dir=cache, progress=False)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        load_features(args.dataset, args.data_dir, folds, spec, cache_dir=cache, progress=False)
        warm = time.perf_counter() - t0
    print(f"{args.dataset} folds {args.folds}: {len(fs)} clips -> x {tuple(fs.x.shape)}, spec {spec.key()}")
    print(f"cold (decode + log-mel + cache write): {cold:.2f} s ({len(fs) / cold:.0f} clips/s)")
    print(f"warm (from cache): {warm:.3f} s")


if __name__ == "__main__":
    main()
