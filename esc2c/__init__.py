"""esc2c: audio dataset -> compressed INT8 classifier -> verified C for Cortex-M."""

__version__ = "0.1.0"
