"""`pair-classifier tune`: run the study's trials (or join it with ``--worker``), report it,
apply its best trial."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from pair_classifier.constants import PARAMS_FILE
from pair_classifier.errors import PairClassifierError, exit_command

logger = logging.getLogger(__name__)

CONFIG_DIR = Path("configs")
tune_app = typer.Typer(
    help="Optuna search, each trial a DVC experiment (docs/experiments-at-scale.md).",
    invoke_without_command=True,
)
ParamsFile = Annotated[Path, typer.Option(help="params.yaml holding the tune section.")]


def _configs(params_file: Path):  # noqa: ANN202 - two sections
    """The tune and tracking sections; logging set up first, so each trial's start, value and
    end show while the study runs."""
    from pair_classifier.config import TrackingConfig, read_params, section
    from pair_classifier.logs import configure_logging
    from pair_classifier.tuning.settings import load_tune

    configure_logging()
    return load_tune(params_file), section(read_params(params_file), "tracking", TrackingConfig)


@tune_app.callback()
def tune(
    ctx: typer.Context,
    worker: Annotated[
        bool,
        typer.Option(
            help="Only run trials of the shared study (no report): one per machine or clone."
        ),
    ] = False,
    params_file: ParamsFile = PARAMS_FILE,
) -> None:
    """Run trials in this workspace until the study holds tune.n_trials, then report it."""
    if ctx.invoked_subcommand is not None:
        return
    from pair_classifier.tuning.report import write_report
    from pair_classifier.tuning.study import run_study

    try:
        config, tracking = _configs(params_file)
        study = run_study(config, tracking, Path.cwd(), worker)
        if not worker:
            out_dir = write_report(study, config, tracking, Path.cwd())
            typer.echo(f"study {config.study_name}: report in {out_dir}")
    except PairClassifierError as error:
        exit_command(error)


@tune_app.command("report")
def report_command(params_file: ParamsFile = PARAMS_FILE) -> None:
    """Plots, trials and summary of the study into plots/tune/<study>/ and MLflow."""
    from pair_classifier.tuning.report import write_report
    from pair_classifier.tuning.study import load_study

    try:
        config, tracking = _configs(params_file)
        out_dir = write_report(load_study(config, Path.cwd()), config, tracking, Path.cwd())
    except PairClassifierError as error:
        exit_command(error)
    typer.echo(f"study {config.study_name}: report in {out_dir}")


@tune_app.command("apply")
def apply_command(params_file: ParamsFile = PARAMS_FILE) -> None:
    """Write the best trial's values into the default config (configs/) and params.yaml."""
    from pair_classifier.tuning.apply import apply_best
    from pair_classifier.tuning.study import load_study

    try:
        config, _ = _configs(params_file)
        changed = apply_best(load_study(config, Path.cwd()), CONFIG_DIR)
    except PairClassifierError as error:
        exit_command(error)
    for key, (old, new) in changed.items():
        typer.echo(f"{key}: {old} -> {new}")
