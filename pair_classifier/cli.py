"""The user's commands: `pair-classifier download-data`, `predict`, `results`, `lineage` and
`services up|down|status`; `serve ...` lives in ``pair_classifier.serving.cli``."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from pair_classifier.config import DataConfig, read_params, section
from pair_classifier.constants import PARAMS_FILE, TEXT_A, TEXT_B
from pair_classifier.demo.cli import demo_command
from pair_classifier.errors import PairClassifierError, exit_command
from pair_classifier.monitoring.cli import drift_command
from pair_classifier.monitoring.prom_cli import monitor_app
from pair_classifier.serving.cli import serve_app
from pair_classifier.tuning.cli import tune_app

app = typer.Typer(
    help="pair-classifier: text-pair classification pipeline tools.", no_args_is_help=True
)

services_app = typer.Typer(
    help="Team services on 127.0.0.1: PostgreSQL, S3 (moto) and the MLflow server.",
    no_args_is_help=True,
)
app.add_typer(services_app, name="services")
app.add_typer(serve_app, name="serve")
app.add_typer(tune_app, name="tune")
app.command("drift")(drift_command)
app.add_typer(monitor_app, name="monitor")
app.command("demo")(demo_command)

DEFAULT_BATCH_SIZE = 64
ParamsFileOption = Annotated[Path, typer.Option(help="params.yaml to read the section from.")]


@app.command("download-data")
def download_data_command(
    source_dir: Annotated[
        Optional[Path],
        typer.Option(
            help="Folder holding the raw files, then the only source tried "
            "(default: a DVC remote, data.shared_dir, then data.public_source)."
        ),
    ] = None,
    params_file: Annotated[
        Path, typer.Option(help="params.yaml to read the data section from.")
    ] = PARAMS_FILE,
) -> None:
    """Put the raw data set named in params.yaml into data/ (DVC remote, shared drive or web)."""
    from pair_classifier.data.download import download_data

    try:
        config = section(read_params(params_file), "data", DataConfig)
        origin = download_data(config, source_dir)
    except PairClassifierError as error:
        exit_command(error)
    typer.echo(f"{config.dir}: data from {origin}")


@app.command()
def predict(
    model: Annotated[
        Path,
        typer.Argument(help="Model folder (bi_encoder/ + classifier/) or an exported .onnx graph."),
    ],
    input_path: Annotated[Path, typer.Argument(help="Pairs to score: .csv, .tsv or .jsonl.")],
    output_path: Annotated[
        Path, typer.Argument(help="Where to write predictions (.csv, .tsv or .jsonl).")
    ],
    text_a: Annotated[str, typer.Option(help="Column holding the first text.")] = TEXT_A,
    text_b: Annotated[str, typer.Option(help="Column holding the second text.")] = TEXT_B,
    batch_size: Annotated[
        int,
        typer.Option(
            min=1, help="Pairs per batch for a graph; distinct texts per batch for a model folder."
        ),
    ] = DEFAULT_BATCH_SIZE,
) -> None:
    """Write each pair's predicted label and class probabilities."""
    from pair_classifier.inference import predict_file

    try:
        predictions = predict_file(model, input_path, output_path, batch_size, text_a, text_b)
    except PairClassifierError as error:
        exit_command(error)
    typer.echo(f"{output_path}: {len(predictions)} pairs scored")


@app.command()
def results(
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Write nothing; exit 1 naming the files that differ from what metrics/ give.",
        ),
    ] = False,
    coverage_report: Annotated[
        Optional[Path],
        typer.Option(
            help="A coverage.py JSON report (pytest --cov-report=json) whose totals refresh "
            "metrics/coverage.json first.",
        ),
    ] = None,
) -> None:
    """Render docs/results.md and README.md's headline block from metrics/ and plots/."""
    from pair_classifier.results_page import stale_files, write_results

    root = Path.cwd()
    try:
        if check:
            stale = stale_files(root, coverage_report)
            if stale:
                typer.echo(
                    f"out of date with metrics/: {', '.join(map(str, stale))}; "
                    "run `pair-classifier results`",
                    err=True,
                )
                raise typer.Exit(1)
            typer.echo("results up to date")
            return
        written = write_results(root, coverage_report)
    except PairClassifierError as error:
        exit_command(error)
    typer.echo(f"written: {', '.join(map(str, written))}")


@app.command()
def lineage(
    model: Annotated[
        str,
        typer.Argument(
            help="models:/NAME@ALIAS, models:/NAME/VERSION, or a version number or @ALIAS of "
            "register.model_name."
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print it as JSON.")] = False,
    diff_out: Annotated[
        Optional[Path],
        typer.Option(help="Write the uncommitted changes recorded with it (a git diff) here."),
    ] = None,
    params_file: ParamsFileOption = PARAMS_FILE,
) -> None:
    """Where a registered version came from (commit, data, params, metrics, DVC outputs) and
    the commands that rebuild it. The registry is MLFLOW_TRACKING_URI's (else params.yaml's)."""
    import json

    from pair_classifier.config import TrackingConfig
    from pair_classifier.registry.lineage import as_json as lineage_json
    from pair_classifier.registry.lineage import as_text, diff_text, model_lineage
    from pair_classifier.registry.settings import SECTION_NAME, RegisterConfig
    from pair_classifier.tracking import check_reachable, tracking_uri

    try:
        params = read_params(params_file)
        tracking = section(params, "tracking", TrackingConfig)
        uri = tracking_uri(tracking)
        check_reachable(uri, tracking.server_timeout_s)
        default_name = section(params, SECTION_NAME, RegisterConfig).model_name
        client, found = model_lineage(model, uri, default_name)
        if diff_out is not None:
            diff_out.write_text(diff_text(client, found), encoding="utf-8")
            typer.echo(f"{diff_out}: uncommitted changes of {found.reference}", err=True)
            return
    except PairClassifierError as error:
        exit_command(error)
    typer.echo(json.dumps(lineage_json(found), indent=2) if as_json else as_text(found))


@services_app.command("up")
def services_up(params_file: ParamsFileOption = PARAMS_FILE) -> None:
    """Start whatever is not running yet (harmless when all are), in dependency order."""
    from pair_classifier.services.manager import up
    from pair_classifier.services.settings import load_services

    try:
        config = load_services(params_file)
        up(config, typer.echo)
    except PairClassifierError as error:
        exit_command(error)
    typer.echo(f"export MLFLOW_TRACKING_URI={config.mlflow.url}")


@services_app.command("down")
def services_down(params_file: ParamsFileOption = PARAMS_FILE) -> None:
    """Stop exactly what `up` started (by recorded PID); data stays for the next `up`."""
    from pair_classifier.services.manager import down
    from pair_classifier.services.settings import load_services

    try:
        down(load_services(params_file), typer.echo)
    except PairClassifierError as error:
        exit_command(error)


@services_app.command("status")
def services_status(params_file: ParamsFileOption = PARAMS_FILE) -> None:
    """Each service's health and the DVC remote's (from here); exits 1 when any is down."""
    from pair_classifier.services.manager import status
    from pair_classifier.services.remote import remote_status
    from pair_classifier.services.settings import load_services

    try:
        config = load_services(params_file)
        statuses = [*status(config), remote_status(config)]
    except PairClassifierError as error:
        exit_command(error)
    for item in statuses:
        state = "up" if item.healthy else "DOWN"
        pid = f"PID {item.pid}" if item.pid else "no PID"
        typer.echo(f"{item.name:<10} {state:<4} {item.address:<24} {pid:<10} {item.detail}")
    if not all(item.healthy for item in statuses):
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
