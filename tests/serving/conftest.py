"""Real servers for the serving tests: the tiny export registered into a sqlite store in a
temporary folder (as the register stage does), served by `pair-classifier serve mlflow` on a
free loopback port, stopped by its PID."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from helpers import composed
from serving_helpers import (  # noqa: F401  (also re-exported for `from conftest import`)
    CLI,
    LINEAGE,
    MAX_BATCH_PAIRS,
    Server,
    free_port,
    post,
    serving_params,
    start_server,
)

from pair_classifier.constants import ENV_TRACKING_URI
from pair_classifier.export.interface import MODEL_CARD, TOKENIZER_SUBDIR, variant_file
from pair_classifier.export.served import ServedModel
from pair_classifier.registry.register import register_served_model
from pair_classifier.registry.settings import RegisterConfig


@pytest.fixture(scope="session")
def registered_store(
    tmp_path_factory: pytest.TempPathFactory, export_dir: Path
) -> Iterator[tuple[Path, str]]:
    """(folder, tracking URI) of a sqlite store where the tiny export's student graph is
    version 1 of register.model_name, the champion."""
    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    served = ServedModel(
        "fp32",
        export_dir / variant_file("student"),
        export_dir / MODEL_CARD,
        export_dir / TOKENIZER_SUBDIR,
    )
    headline = {
        "f1": 0.8,
        "accuracy": 0.7,
        "throughput_pairs_per_s": 100.0,
        "speedup_vs_pytorch_fp32_teacher": 1.0,
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # the store's artifacts land beside it
        patch.setenv("MLFLOW_REGISTRY_URI", uri)
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        mlflow.set_experiment("serving-test")
        try:
            record = register_served_model(
                served, headline, composed("register", RegisterConfig, threads=1), LINEAGE
            )
        finally:
            mlflow.set_tracking_uri(None)
            mlflow.set_registry_uri(None)
    assert (record["version"], record["alias"]) == (1, "champion")
    yield root, uri


@pytest.fixture(scope="module")
def mlflow_server(
    registered_store: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """`pair-classifier serve mlflow` on the champion, on a free port."""
    folder, uri = registered_store
    work = tmp_path_factory.mktemp("serve-mlflow")
    port = free_port()
    env = dict(os.environ) | {ENV_TRACKING_URI: uri, "MLFLOW_REGISTRY_URI": uri}
    server = start_server(
        [str(CLI), "serve", "mlflow", "--port", str(port), "--params-file"]
        + [str(serving_params(work))],
        f"http://127.0.0.1:{port}",
        "/ping",
        env,
        work / "serve.log",
    )
    yield server
    server.stop()
