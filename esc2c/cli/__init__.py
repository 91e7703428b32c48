"""The ``esc2c`` command line: one module per command group in this package (the top layer: nothing else in
esc2c imports it); this file wires them into one click group."""
from __future__ import annotations

import sys

import click

from esc2c import __version__
from esc2c.cli.audio import audio_cmd
from esc2c.cli.compiler import emit_cmd, verify_cmd
from esc2c.cli.compress import compress
from esc2c.cli.data import datasets
from esc2c.cli.device import flash_cmd, run_cmd
from esc2c.cli.experiment import experiment
from esc2c.cli.qdebug import qdebug_cmd
from esc2c.errors import Esc2cError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="esc2c")
def cli():
    """esc2c: audio dataset -> compressed INT8 classifier -> verified C for the STM32F746ZG."""


for _command in (datasets, compress, experiment, run_cmd, flash_cmd, emit_cmd, verify_cmd, audio_cmd, qdebug_cmd):
    cli.add_command(_command)


def main(argv=None) -> int:
    try:
        cli.main(args=argv, prog_name="esc2c", standalone_mode=False)
    except Esc2cError as e:
        click.echo(f"esc2c: error: {e}", err=True)
        return 1
    except click.exceptions.Abort:
        click.echo("esc2c: aborted", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
