"""`pair-classifier serve triton` and `serve triton-predict`, registered on the ``serve``
sub-app (``serving.cli``). Heavy imports happen inside the commands, so `--help` stays quick."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from pair_classifier.config import read_params, section
from pair_classifier.constants import PARAMS_FILE, TEXT_A, TEXT_B
from pair_classifier.errors import PairClassifierError, exit_command
from pair_classifier.serving.settings import SECTION_NAME as SERVING_SECTION
from pair_classifier.serving.settings import ServingConfig
from pair_classifier.serving.triton_settings import (
    CPU_REPOSITORY,
    REPOSITORY_DIR,
    SECTION_NAME,
    TritonConfig,
)

ParamsFileOption = Annotated[
    Path, typer.Option(help="params.yaml to read the serving and triton sections from.")
]


def _settings(params_file: Path) -> tuple[ServingConfig, TritonConfig]:
    params = read_params(params_file)
    return section(params, SERVING_SECTION, ServingConfig), section(
        params, SECTION_NAME, TritonConfig
    )


def serve_triton_command(
    repository: Annotated[
        Path,
        typer.Option(help="Triton model repository (the CPU one the triton-repo stage writes)."),
    ] = REPOSITORY_DIR
    / CPU_REPOSITORY,
    http_port: Annotated[
        Optional[int], typer.Option(min=1, help="HTTP port (default: triton.server.http_port).")
    ] = None,
    metrics_port: Annotated[
        Optional[int],
        typer.Option(min=1, help="Metrics port (default: triton.server.metrics_port)."),
    ] = None,
    params_file: ParamsFileOption = PARAMS_FILE,
) -> None:
    """The bundled Triton server (serving/triton environment) on serving.host (127.0.0.1),
    behind an nginx front that limits the body; stops cleanly on SIGTERM or Ctrl-C."""
    from pair_classifier.serving.triton_server import ServerPorts, serve_triton

    try:
        serving, triton = _settings(params_file)
        ports = ServerPorts(
            serving.host,
            http_port or triton.server.http_port,
            metrics_port or triton.server.metrics_port,
        )
        serve_triton(
            serving,
            triton,
            repository,
            ports,
            lambda what: typer.echo(f"serving {what} (stop: Ctrl-C or SIGTERM)", err=True),
        )
    except PairClassifierError as error:
        exit_command(error)


def triton_predict_command(
    input_path: Annotated[
        Optional[Path], typer.Argument(help="Pairs to score: .csv, .tsv or .jsonl.")
    ] = None,
    output_path: Annotated[
        Optional[Path], typer.Argument(help="Where to write predictions (.csv, .tsv or .jsonl).")
    ] = None,
    pair: Annotated[
        Optional[tuple[str, str]],
        typer.Option(help="Score one pair given as two texts instead; prints it as JSON."),
    ] = None,
    url: Annotated[
        Optional[str],
        typer.Option(help="The server (default: http://<serving.host>:<triton.server.http_port>)."),
    ] = None,
    model: Annotated[
        Optional[str], typer.Option(help="Model name (default: triton.model_name).")
    ] = None,
    text_a: Annotated[str, typer.Option(help="Column holding the first text.")] = TEXT_A,
    text_b: Annotated[str, typer.Option(help="Column holding the second text.")] = TEXT_B,
    params_file: ParamsFileOption = PARAMS_FILE,
) -> None:
    """Score pairs on a running Triton server; writes what `pair-classifier predict` writes."""
    from pair_classifier.serving.triton_client import (
        TritonPredictor,
        predict_on_triton,
        predict_pair,
    )

    if (pair is None) == (input_path is None or output_path is None):
        exit_command(ValueError("give INPUT and OUTPUT files, or --pair TEXT_A TEXT_B"))
    try:
        serving, triton = _settings(params_file)
        predictor = TritonPredictor(
            url or f"http://{serving.host}:{triton.server.http_port}", model or triton.model_name
        )
        try:
            if pair is not None:
                typer.echo(json.dumps(predict_pair(predictor, *pair), ensure_ascii=False))
                return
            predictions = predict_on_triton(predictor, input_path, output_path, text_a, text_b)
        finally:
            predictor.close()
    except PairClassifierError as error:
        exit_command(error)
    typer.echo(
        f"{output_path}: {len(predictions)} pairs scored by {predictor.model} version "
        f"{', '.join(sorted(predictor.versions))} ({predictor.truncated} truncated)"
    )
