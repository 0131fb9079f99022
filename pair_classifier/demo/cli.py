"""`pair-classifier demo`: the demo page in the foreground (registered on the main app in
``pair_classifier.cli``). Gradio and ONNX Runtime are imported inside the command, so `--help`
stays quick."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from pair_classifier.config import TrackingConfig, read_params, section
from pair_classifier.constants import ENV_TRACKING_URI, PARAMS_FILE
from pair_classifier.demo.settings import AUTO, BACKENDS, EXPORT, TRITON, DemoConfig
from pair_classifier.errors import PairClassifierError, exit_command
from pair_classifier.logs import configure_logging
from pair_classifier.registry.settings import RegisterConfig
from pair_classifier.serving.process import ServingError
from pair_classifier.serving.settings import ServingConfig
from pair_classifier.serving.triton_settings import TritonConfig

if TYPE_CHECKING:
    from pair_classifier.demo.scoring import Scorer

logger = logging.getLogger(__name__)


def _scorer(
    demo: DemoConfig,
    backend: str,
    url: str,
    triton_model: str,
    registered_name: str,
) -> Scorer:
    """What answers the page: Triton at ``url``, or the export folder (``auto``: Triton when
    it is ready within ``demo.probe_timeout_s``)."""
    from pair_classifier.demo.scoring import ExportScorer, TritonScorer, triton_ready

    if backend == AUTO:
        backend = TRITON if triton_ready(url, demo.probe_timeout_s) else EXPORT
    if backend == TRITON:
        return TritonScorer(url, triton_model, registered_name, demo.max_text_chars)
    return ExportScorer.from_folders(
        Path(demo.benchmark_metrics),
        Path(demo.onnx_dir),
        Path(demo.quantized_dir),
        Path(demo.register_metrics),
        demo.threads,
        demo.max_text_chars,
    )


def demo_command(
    triton_url: Annotated[
        Optional[str],
        typer.Option(help="A Triton server to call, http://HOST:PORT (implies --backend triton)."),
    ] = None,
    backend: Annotated[
        Optional[str],
        typer.Option(
            help="auto (Triton when it answers, else the export folder), triton or export "
            "(default: demo.backend)."
        ),
    ] = None,
    port: Annotated[Optional[int], typer.Option(min=1, help="Port (default: demo.port).")] = None,
    host: Annotated[
        Optional[str],
        typer.Option(help="Address (default: demo.host, 127.0.0.1); beyond it needs the token."),
    ] = None,
    params_file: Annotated[
        Path, typer.Option(help="params.yaml to read the demo, serving and triton sections from.")
    ] = PARAMS_FILE,
) -> None:
    """A page that scores a pair on the served model (Triton, or the export folder when no
    server runs), with its version and lineage; on 127.0.0.1 unless a token guards it."""
    from pair_classifier.demo.access import page_token
    from pair_classifier.serving.process import require_free_port

    configure_logging()
    try:
        params = read_params(params_file)
        demo = section(params, "demo", DemoConfig)
        serving = section(params, "serving", ServingConfig)
        triton = section(params, "triton", TritonConfig)
        chosen = TRITON if triton_url else (backend or demo.backend)
        if chosen not in BACKENDS:
            raise ServingError(f"--backend {chosen!r}: expected one of {list(BACKENDS)}")
        address, listen_port = host or demo.host, port or demo.port
        token = page_token(serving, address, os.environ)
        require_free_port("demo page", address, listen_port)
        scorer = _scorer(
            demo,
            chosen,
            triton_url or f"http://{serving.host}:{triton.server.http_port}",
            triton.model_name,
            section(params, "register", RegisterConfig).model_name,
        )
        logger.info("the page's answers come from %s", scorer.source)
        from pair_classifier.demo.page import build_page, serve_page

        tracking_uri = (
            os.environ.get(ENV_TRACKING_URI)
            or section(params, "tracking", TrackingConfig).tracking_uri
        )
        page = build_page(scorer, tracking_uri, demo.max_text_chars)
        serve_page(
            page,
            address,
            listen_port,
            token,
            demo.user,
            serving.token_env,
            lambda what: typer.echo(f"demo page on {what} (stop: Ctrl-C or SIGTERM)", err=True),
        )
    except PairClassifierError as error:
        exit_command(error)
    logger.info("demo page stopped")
