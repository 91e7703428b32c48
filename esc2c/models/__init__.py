"""Classifier models for log-mel input, built only from the blocks in :mod:`esc2c.models.blocks`."""
