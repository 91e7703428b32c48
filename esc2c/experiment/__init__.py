"""``esc2c experiment``: the compression pipeline over a grid of seeds x test folds, with error bars.

grid.py    the cells (seed x test fold), their configs, the atomic cell lock, the worker loop
worker.py  the worker process entry (``python -m esc2c.experiment.worker``) that ``--jobs N`` starts
stats.py   mean / std over cells and paired differences with t intervals
report.py  experiment.json, experiment.md and the plot, rebuilt from the finished cells
cli.py     the ``esc2c experiment`` command
"""
