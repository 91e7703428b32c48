"""Datasets: ESC-50, UrbanSound8K (official layouts and folds) and a built-in synthetic sound set."""
from esc2c.data.loader import (
    DATASETS,
    SUBSETS,
    Clip,
    DatasetInfo,
    FeatureSet,
    MissingClipsWarning,
    dataset_info,
    default_cache_dir,
    default_spec,
    load_clips,
    load_features,
)

__all__ = [
    "DATASETS",
    "SUBSETS",
    "Clip",
    "DatasetInfo",
    "FeatureSet",
    "MissingClipsWarning",
    "dataset_info",
    "default_cache_dir",
    "default_spec",
    "load_clips",
    "load_features",
]
