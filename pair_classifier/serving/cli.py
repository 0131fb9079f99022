"""`pair-classifier serve ...`: run a server on loopback, or the token-checking proxy that
exposes one. Each command runs in the foreground and stops everything it started on SIGTERM or
Ctrl-C. Heavy imports (MLflow) happen inside the commands, so `--help` stays quick."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from pair_classifier.config import TrackingConfig, read_params, section
from pair_classifier.constants import PARAMS_FILE
from pair_classifier.errors import PairClassifierError, exit_command
from pair_classifier.logs import configure_logging
from pair_classifier.serving.settings import SECTION_NAME, ServingConfig
from pair_classifier.serving.triton_cli import serve_triton_command, triton_predict_command

serve_app = typer.Typer(
    help="Serve the registered model on 127.0.0.1, or expose a server through a token proxy.",
    no_args_is_help=True,
)

ParamsFileOption = Annotated[
    Path, typer.Option(help="params.yaml to read the serving section from.")
]


def _ready(what: str) -> None:
    typer.echo(f"serving {what} (stop: Ctrl-C or SIGTERM)", err=True)


def serving_config(params_file: Path) -> ServingConfig:
    """The serving section, or a clear exit naming what is wrong with it."""
    configure_logging()
    try:
        return section(read_params(params_file), SECTION_NAME, ServingConfig)
    except PairClassifierError as error:
        exit_command(error)


@serve_app.command("mlflow")
def serve_mlflow_command(
    model: Annotated[
        Optional[str],
        typer.Option(help="MLflow model URI (default: serving.model_uri, the champion)."),
    ] = None,
    port: Annotated[
        Optional[int], typer.Option(min=1, help="Port (default: serving.mlflow_port).")
    ] = None,
    params_file: ParamsFileOption = PARAMS_FILE,
) -> None:
    """`mlflow models serve` on the registered model, bound to serving.host (127.0.0.1)."""
    from pair_classifier.serving.mlflow_serving import serve_mlflow

    config = serving_config(params_file)
    try:
        tracking = section(read_params(params_file), "tracking", TrackingConfig)
        serve_mlflow(
            config, tracking, model or config.model_uri, port or config.mlflow_port, _ready
        )
    except PairClassifierError as error:
        exit_command(error)


@serve_app.command("expose")
def serve_expose_command(
    upstream: Annotated[
        str, typer.Option(help="The server to protect, e.g. http://127.0.0.1:5001.")
    ],
    port: Annotated[
        Optional[int], typer.Option(min=1, help="The proxy's port (default: serving.proxy_port).")
    ] = None,
    host: Annotated[
        Optional[str],
        typer.Option(help="The proxy's address (default: serving.proxy_host, 127.0.0.1)."),
    ] = None,
    params_file: ParamsFileOption = PARAMS_FILE,
) -> None:
    """An nginx proxy that requires `Authorization: Bearer $PAIR_CLASSIFIER_SERVING_TOKEN`
    (serving.token_env) and limits the body to serving.max_body_bytes; point a tunnel here."""
    from pair_classifier.serving.expose import serve_expose

    config = serving_config(params_file)
    try:
        serve_expose(
            config,
            upstream,
            host or config.proxy_host,
            port or config.proxy_port,
            os.environ,
            _ready,
        )
    except PairClassifierError as error:
        exit_command(error)


serve_app.command("triton")(serve_triton_command)
serve_app.command("triton-predict")(triton_predict_command)
