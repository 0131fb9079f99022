"""What a user gets without this project: the PyTorch fp32 teacher folder served as it is by
``mlflow models serve``. The load test serves it beside the project's servers, as a baseline."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

from pair_classifier.constants import TEXT_A, TEXT_B

logger = logging.getLogger(__name__)

MODEL_ARTIFACT = "model_folder"  # bi_encoder/ + classifier/
INPUT_COLUMNS = [TEXT_A, TEXT_B]


class TorchFolderPyfunc(mlflow.pyfunc.PythonModel):
    """A trained model folder (PyTorch bi-encoder + SVM) scoring a DataFrame of text pairs."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.predictor: Any = None

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        from pair_classifier.predictor import PairPredictor

        self.predictor = PairPredictor.load(
            Path(context.artifacts[MODEL_ARTIFACT]), self.batch_size
        )

    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        from pair_classifier.predictor import with_predictions

        return with_predictions(self.predictor, model_input[INPUT_COLUMNS])


def save_folder_pyfunc(model_dir: Path, target: Path, batch_size: int) -> Path:
    """The model folder as an MLflow pyfunc model directory at ``target`` (not registered)."""
    logger.info("Saving %s as an MLflow pyfunc at %s", model_dir, target)
    mlflow.pyfunc.save_model(
        path=str(target),
        python_model=TorchFolderPyfunc(batch_size),
        artifacts={MODEL_ARTIFACT: str(model_dir)},
        pip_requirements=[],  # served with --env-manager local: this environment
    )
    return target
