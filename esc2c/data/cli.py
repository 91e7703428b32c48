"""`esc2c datasets` (filled in by the dataset loaders)."""
import click


@click.group()
def datasets():
    """Inspect the datasets esc2c reads."""
