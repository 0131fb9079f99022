"""`pair-classifier drift`, registered on the main app (``pair_classifier.cli``). Exit code 0:
no drift; 1: drift (a check's score is above its threshold); 2: a user error (bad file,
config or window), so a scheduler can tell them apart."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer

from pair_classifier.config import read_params, section
from pair_classifier.constants import PARAMS_FILE, TEXT_A, TEXT_B
from pair_classifier.errors import PairClassifierError, exit_command
from pair_classifier.logs import configure_logging
from pair_classifier.monitoring.settings import SECTION_NAME, DriftConfig

DRIFT_EXIT_CODE = 1
BENCHMARK_METRICS = Path("metrics/benchmark.json")  # names the served graph
ONNX_DIR = Path("artifacts/onnx")
QUANTIZED_DIR = Path("artifacts/quantized")


def _utc(value: Optional[datetime]) -> Optional[datetime]:
    """A time given without a zone is taken as UTC (the log's times are UTC)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def _graphs(model: Optional[Path]) -> tuple[Path, Path]:
    """(served graph, graph whose vectors are read): ``--model`` for both, else the graph the
    benchmark chose to serve and the fp32 export of the same student."""
    from pair_classifier.export.served import FP32, served_graph, served_model

    if model is not None:
        return model, model
    served = served_model(BENCHMARK_METRICS, ONNX_DIR, QUANTIZED_DIR)
    return served.graph, served_graph(FP32, ONNX_DIR, QUANTIZED_DIR)


def drift_command(
    window: Annotated[
        Path,
        typer.Argument(
            help="Served traffic: a traffic log folder or file, or pairs (.csv, .tsv, .jsonl)."
        ),
    ],
    since: Annotated[
        Optional[datetime], typer.Option(help="Traffic log records from this time (UTC).")
    ] = None,
    until: Annotated[
        Optional[datetime], typer.Option(help="Traffic log records before this time (UTC).")
    ] = None,
    model: Annotated[
        Optional[Path],
        typer.Option(
            help="The served .onnx graph (default: the one metrics/benchmark.json names)."
        ),
    ] = None,
    reference: Annotated[
        Optional[Path], typer.Option(help="Training pairs (default: drift.reference).")
    ] = None,
    prediction_reference: Annotated[
        Optional[Path],
        typer.Option(
            help="Held-out pairs for the model outputs (default: drift.prediction_reference)."
        ),
    ] = None,
    out_dir: Annotated[
        Optional[Path],
        typer.Option(help="Where drift.json and drift.html go (default: drift.out_dir)."),
    ] = None,
    text_a: Annotated[str, typer.Option(help="Column holding the first text.")] = TEXT_A,
    text_b: Annotated[str, typer.Option(help="Column holding the second text.")] = TEXT_B,
    params_file: Annotated[
        Path, typer.Option(help="params.yaml to read drift from.")
    ] = PARAMS_FILE,
) -> None:
    """Compare served traffic with the training data; exit 1 on drift, 0 without."""
    from pair_classifier.monitoring.drift import DriftInputs, run_drift
    from pair_classifier.monitoring.report import DRIFT_HTML, write_report

    configure_logging()
    try:
        config = section(read_params(params_file), SECTION_NAME, DriftConfig)
        graph, encoder_graph = _graphs(model)
        inputs = DriftInputs(
            window=window,
            reference=reference or Path(config.reference),
            prediction_reference=prediction_reference or Path(config.prediction_reference),
            graph=graph,
            encoder_graph=encoder_graph,
            since=_utc(since),
            until=_utc(until),
            text_a=text_a,
            text_b=text_b,
        )
        folder = out_dir or Path(config.out_dir)
        record = write_report(run_drift(inputs, config), folder)
    except PairClassifierError as error:
        exit_command(error)
    for name, check in record["checks"].items():
        typer.echo(
            f"{name}: {check['verdict']} (score {check['score']}, threshold {check['threshold']})"
        )
    typer.echo(f"{record['verdict']}: {folder / DRIFT_HTML}")
    if record["verdict"] == "drift":
        raise typer.Exit(DRIFT_EXIT_CODE)
