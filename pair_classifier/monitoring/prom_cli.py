"""`pair-classifier monitor exporter | prometheus-config | prometheus`: the metrics the traffic
log and drift.json give, Prometheus's config written from params.yaml, and Prometheus run on
loopback with it. Heavy imports happen inside the commands, so `--help` stays quick."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pair_classifier.config import read_params, section
from pair_classifier.constants import PARAMS_FILE
from pair_classifier.errors import PairClassifierError, exit_command
from pair_classifier.logs import configure_logging
from pair_classifier.monitoring.prom_server import CONFIG_FILE, DRIFT_FILE
from pair_classifier.monitoring.prom_settings import MonitoringConfig, load_monitoring

monitor_app = typer.Typer(
    help="Prometheus metrics of the served model: the exporter, the scrape config, Prometheus.",
    no_args_is_help=True,
)

ParamsFileOption = Annotated[
    Path, typer.Option(help="params.yaml to read the monitoring section from.")
]


def _monitoring(params_file: Path) -> MonitoringConfig:
    configure_logging()
    try:
        return load_monitoring(params_file)
    except PairClassifierError as error:
        exit_command(error)


@monitor_app.command("exporter")
def exporter_command(
    traffic_log: Annotated[
        Optional[Path],
        typer.Option(
            help="Traffic log to follow: a folder of <server>-<pid>.jsonl files, or one file "
            "(default: serving.traffic_log.dir)."
        ),
    ] = None,
    drift_report: Annotated[
        Optional[Path],
        typer.Option(help=f"drift.json to export (default: drift.out_dir/{DRIFT_FILE})."),
    ] = None,
    port: Annotated[
        Optional[int], typer.Option(min=1, help="Port (default: monitoring.exporter.port).")
    ] = None,
    from_start: Annotated[
        Optional[bool],
        typer.Option(
            "--from-start/--from-end",
            help="Count the lines already in the log, or only new ones "
            "(default: monitoring.exporter.from_start).",
        ),
    ] = None,
    params_file: ParamsFileOption = PARAMS_FILE,
) -> None:
    """Serve the traffic log's label mix, truncations, confidence and latency, and the latest
    drift verdicts, as Prometheus metrics on monitoring.host (127.0.0.1)."""
    from pair_classifier.monitoring.exporter import run_exporter
    from pair_classifier.monitoring.settings import SECTION_NAME as DRIFT_SECTION
    from pair_classifier.monitoring.settings import DriftConfig
    from pair_classifier.serving.settings import SECTION_NAME as SERVING_SECTION
    from pair_classifier.serving.settings import ServingConfig

    config = _monitoring(params_file)
    try:
        params = read_params(params_file)
        if traffic_log is None:
            traffic_log = Path(section(params, SERVING_SECTION, ServingConfig).traffic_log.dir)
        if drift_report is None:
            drift_report = Path(section(params, DRIFT_SECTION, DriftConfig).out_dir) / DRIFT_FILE
        run_exporter(
            config,
            traffic_log,
            drift_report,
            port or config.exporter.port,
            config.exporter.from_start if from_start is None else from_start,
            lambda what: typer.echo(f"serving {what} (stop: Ctrl-C or SIGTERM)", err=True),
        )
    except PairClassifierError as error:
        exit_command(error)


@monitor_app.command("prometheus-config")
def prometheus_config_command(
    output: Annotated[Path, typer.Option(help="Where to write the config.")] = CONFIG_FILE,
    params_file: ParamsFileOption = PARAMS_FILE,
) -> None:
    """Write Prometheus's scrape config (Triton's metrics port, the exporter, the alert rules
    beside it) from params.yaml."""
    from pair_classifier.monitoring.prom_server import config_text, scrape_config
    from pair_classifier.serving.settings import SECTION_NAME as SERVING_SECTION
    from pair_classifier.serving.settings import ServingConfig
    from pair_classifier.serving.triton_settings import SECTION_NAME as TRITON_SECTION
    from pair_classifier.serving.triton_settings import TritonConfig

    config = _monitoring(params_file)
    try:
        params = read_params(params_file)
        serving = section(params, SERVING_SECTION, ServingConfig)
        triton = section(params, TRITON_SECTION, TritonConfig)
    except PairClassifierError as error:
        exit_command(error)
    scrape = scrape_config(
        config,
        f"{serving.host}:{triton.server.metrics_port}",
        f"{config.host}:{config.exporter.port}",
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(config_text(scrape), encoding="utf-8")
    typer.echo(f"written: {output}")


@monitor_app.command("prometheus")
def prometheus_command(
    config_file: Annotated[Path, typer.Option(help="Prometheus config.")] = CONFIG_FILE,
    port: Annotated[
        Optional[int], typer.Option(min=1, help="Port (default: monitoring.prometheus.port).")
    ] = None,
    params_file: ParamsFileOption = PARAMS_FILE,
) -> None:
    """Debian's `prometheus` on monitoring.host (127.0.0.1) with the config and its alert rules;
    data in monitoring.prometheus.data_dir. It replaces this process: stop it by its PID."""
    from pair_classifier.monitoring.prom_server import run_prometheus

    config = _monitoring(params_file)
    try:
        run_prometheus(config, config_file, port or config.prometheus.port)
    except PairClassifierError as error:
        exit_command(error)
