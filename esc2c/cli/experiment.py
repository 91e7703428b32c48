"""``esc2c experiment``: the compress pipeline over seeds x test folds, then mean +- std and paired differences."""
from __future__ import annotations

import click

from esc2c.compress.config import KD_BASELINES, load_config
from esc2c.errors import Esc2cError
from esc2c.experiment import grid, ranks, report


def parse_methods(text: str | None) -> list[str] | None:
    """'kd,fitnet' / 'all' / 'none' -> the ``kd_baselines`` list (None keeps the config's)."""
    if text is None:
        return None
    t = text.strip().lower()
    if t == "all":
        return list(KD_BASELINES)
    if t == "none":
        return []
    names = [n for n in t.replace(" ", "").split(",") if n]
    bad = [n for n in names if n not in KD_BASELINES]
    if bad or not names:
        raise Esc2cError(f"--methods: unknown KD baseline(s) {bad or [text]} (choose {', '.join(KD_BASELINES)}, "
                         "all or none)")
    return names


@click.command("experiment")
@click.argument("config_path", metavar="[CONFIG]", required=False, type=click.Path(dir_okay=False))
@click.option("--seeds", default="0,1,2", show_default=True, help="Seeds, comma-separated.")
@click.option("--folds", default="cv", show_default=True,
              help="Test folds: 'cv' = every fold of the config's cv_folds in turn, or a list like 1,3 of them; "
                   "the other folds of cv_folds train.")
@click.option("--jobs", type=int, default=1, show_default=True, help="Cells run in this many parallel processes.")
@click.option("--cell-procs", type=int, default=1, show_default=True,
              help="Processes per cell: > 1 runs each cell data-parallel under torchrun (gloo on CPU, nccl on CUDA).")
@click.option("--threads", type=int, default=None,
              help="Torch threads in all, split among the jobs (default: the config's threads); under torchrun, "
                   "per rank.")
@click.option("--methods", default=None,
              help="Table 1 KD baselines to train besides PoKD: kd,fitnet,mhkd,alpkd, all or none "
                   "(default: the config's kd_baselines).")
@click.option("--data-dir", default=None, help="Folder of the dataset (overrides the config).")
@click.option("--device", default=None, help="cpu or cuda (overrides the config).")
@click.option("--summarize", "summarize_dir", type=click.Path(file_okay=False), default=None,
              help="Rebuild experiment.json/.md/.png of this experiment directory from its finished cells, "
                   "without training.")
@click.option("--against", "against_dir", type=click.Path(file_okay=False), default=None,
              help="Another experiment directory (e.g. the same grid under the previous recipe): every model is "
                   "also compared with itself there, paired over the cells both finished.")
@click.option("-o", "--output", type=click.Path(file_okay=False), default=None,
              help="Experiment directory (cells resume from it; several invocations may share it).")
def experiment(config_path, seeds, folds, jobs, cell_procs, threads, methods, data_dir, device, summarize_dir,
               against_dir, output):
    """Run CONFIG's compression over seeds x test folds into OUTPUT/cells/, then write OUTPUT/experiment.json,
    experiment.md and experiment.png: per model mean +- std over the cells and paired differences with 95 %
    t intervals. Launched by torchrun, every rank runs cells (OUTPUT on a filesystem all nodes share) and
    rank 0 writes the summary."""

    launch = ranks.launched()        # under torchrun every rank is a grid worker; rank 0 writes the report
    if against_dir is not None:
        grid.read_grid(against_dir)  # not an experiment directory: say so now, not after the grid has run
    if summarize_dir is not None:
        if config_path is not None or output is not None:
            raise Esc2cError("--summarize DIR takes no CONFIG or -o (it only reads DIR's finished cells)")
        out = summarize_dir
    else:
        if config_path is None or output is None:
            raise Esc2cError("experiment needs CONFIG and -o DIR (or --summarize DIR)")
        overrides = {"kd_baselines": parse_methods(methods), "data_dir": data_dir, "device": device}
        base = grid.check_base(load_config(config_path, overrides))
        cells = grid.plan(grid.parse_seeds(seeds), grid.parse_test_folds(folds, base))
        if threads is not None and threads < 1:
            raise Esc2cError(f"--threads must be >= 1 (got {threads})")
        if launch is None:
            click.echo(f"experiment: {len(cells)} cells ({', '.join(c.name for c in cells)}) into {output}")
            grid.run_grid(output, base, cells, jobs=jobs, threads=threads, log=click.echo, cell_procs=cell_procs)
        else:
            if launch.rank == 0:
                click.echo(f"experiment: {len(cells)} cells ({', '.join(c.name for c in cells)}) into {output}, "
                           f"{launch.world} ranks")
            ranks.run_grid_ranks(launch, output, base, cells, jobs=jobs, threads=threads, log=click.echo,
                                 cell_procs=cell_procs)
        out = output
    if launch is not None and launch.rank != 0:
        return
    exp = report.write(out, against=against_dir)
    click.echo(report.format_console(exp))
    click.echo(f"wrote {out}/experiment.json, experiment.md and experiment.png")
