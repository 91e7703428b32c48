"""`esc2c datasets`: inspect the datasets esc2c reads."""
from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from esc2c.data.loader import DATASETS, SUBSETS, dataset_info


@click.group()
def datasets():
    """Inspect the datasets esc2c reads."""

@datasets.command()
@click.option("--dataset", "-d", type=click.Choice(DATASETS + SUBSETS), required=True, help="Which dataset.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="The dataset's root directory (the one holding its metadata csv). Not used by synthetic.")
def info(dataset, data_dir):
    """Per-fold and per-class counts of clips found on disk vs listed in the official csv."""

    di = dataset_info(dataset, data_dir)
    console = Console(highlight=False)
    title = f"{di.dataset}" + (f": {di.csv}" if di.csv else " (generated)")

    def status(found, listed):
        return "complete" if found == listed else ("no audio" if found == 0 else f"{listed - found} missing")

    t = Table(title=title)
    t.add_column("fold", justify="right")
    t.add_column("found", justify="right")
    t.add_column("listed", justify="right")
    t.add_column("status")
    t.add_column("audio directory", overflow="fold")
    for f, found, listed in di.folds:
        t.add_row(str(f), str(found), str(listed), status(found, listed), di.fold_dirs.get(f, ""))
    t.add_row("all", str(di.found), str(di.listed), status(di.found, di.listed), "", end_section=True)
    console.print(t)

    c = Table(title=f"{di.dataset}: classes")
    c.add_column("class")
    c.add_column("found", justify="right")
    c.add_column("listed", justify="right")
    for name, found, listed in di.classes:
        c.add_row(name, str(found), str(listed))
    console.print(c)
    console.print(f"{di.found} of {di.listed} listed clips found; {di.missing} missing.")
