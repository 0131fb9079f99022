"""Training progress as log lines, for runs nobody watches in a terminal (`dvc repro` in a log
file, CI): Lightning's progress bar draws nothing there, so a long epoch would look stalled."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L

from pair_classifier.logs import Progress

logger = logging.getLogger(__name__)
# LearningRateMonitor's entries among the logged metrics: not a figure of the epoch.
LEARNING_RATE_PREFIX = "lr-"


class ProgressLog(L.Callback):
    """A line when an epoch starts, one every ``logs.PROGRESS_EVERY_S`` seconds with the batch
    reached, and one with the validation figures when it ends. Reads state only, so training
    is the same with or without it."""

    def __init__(self) -> None:
        self.progress: Progress | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        what = f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
        self.progress = Progress(what, int(trainer.num_training_batches), logger)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any, **kwargs: Any
    ) -> None:
        if self.progress is not None:
            self.progress.step()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        figures = ", ".join(
            f"{name} {float(value):.4f}"
            for name, value in sorted(trainer.callback_metrics.items())
            if value.numel() == 1 and not name.startswith(LEARNING_RATE_PREFIX)
        )
        logger.info("epoch %d/%d: %s", trainer.current_epoch + 1, trainer.max_epochs, figures)
