"""Datasets: ESC-50, UrbanSound8K (official layouts and folds) and a built-in synthetic sound set."""
