"""The loggers of a training run and the curves they leave: DVCLive (feeds `dvc plots`) and
MLflow, and the loss and accuracy curves copied into plots/ as small JSON files kept in git."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import pandas as pd
from dvclive.lightning import DVCLiveLogger
from lightning.pytorch.loggers import Logger, MLFlowLogger

from pair_classifier.io_utils import write_json

logger = logging.getLogger(__name__)

DVCLIVE_SUMMARY = "metrics.json"  # DVCLive's latest values, read back when a run resumes
DVCLIVE_METRICS_SUBDIR = Path("plots/metrics")
# DVCLive files Lightning's `train_loss` (logged per step) and `val_loss` under these names.
DVCLIVE_LOSS_FILES = {"train": "train/step/loss.tsv", "validation": "val/loss.tsv"}
# Curves DVCLive logs, copied as small JSON files into plots/train (kept in git, as the metrics
# are), so `dvc plots show` and `dvc plots diff` work on a fresh clone: file -> (DVCLive file,
# column of the value).
CURVE_FILES = {
    "train_loss.json": ("train/step/loss.tsv", "loss"),
    "val_loss.json": ("val/loss.tsv", "loss"),
    "val_acc.json": ("val/acc.tsv", "acc"),
}
CURVE_STEP = "step"


def repair_cut_summary(dvclive_dir: Path) -> None:
    """Remove DVCLive's summary when a kill cut its rewrite short (DVCLive writes it in place):
    resuming would read it and fail. The next logged step writes it afresh."""
    summary = dvclive_dir / DVCLIVE_SUMMARY
    if not summary.is_file():
        return
    try:
        json.loads(summary.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        logger.warning("%s was cut short by the kill; removed, it is rewritten on resume", summary)
        summary.unlink()


def training_loggers(
    dvclive_dir: Path, resume: bool, mlflow_run_id: str | None, tracking_uri: str
) -> list[Logger]:
    """DVCLive (feeds `dvc plots`) and, when a tracking run is open, MLflow (per-step curves)."""
    if not resume and dvclive_dir.exists():
        shutil.rmtree(dvclive_dir)
    if resume:
        repair_cut_summary(dvclive_dir)
    loggers: list[Logger] = [
        DVCLiveLogger(
            dir=str(dvclive_dir), resume=resume, dvcyaml=False, save_dvc_exp=False, report=None
        )
    ]
    if mlflow_run_id is not None:
        loggers.append(
            MLFlowLogger(run_id=mlflow_run_id, tracking_uri=tracking_uri, log_model=False)
        )
    return loggers


def loss_curves(dvclive_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """Training (per step) and validation (per epoch) loss as DVCLive logged them."""
    curves = {}
    for name, relative in DVCLIVE_LOSS_FILES.items():
        path = dvclive_dir / DVCLIVE_METRICS_SUBDIR / relative
        if path.is_file():
            frame = pd.read_csv(path, sep="\t")
            curves[name] = list(zip(frame["step"], frame["loss"]))
    return curves


def write_curve_data(dvclive_dir: Path, out_dir: Path) -> list[Path]:
    """Copy the curves DVCLive logged (step and value; not its wall-clock timestamps, which
    would make every rerun a diff) to ``out_dir`` as JSON; a value that is not finite is
    written as null. Returns the files written."""
    written = []
    for name, (relative, column) in CURVE_FILES.items():
        source = dvclive_dir / DVCLIVE_METRICS_SUBDIR / relative
        if not source.is_file():
            continue
        frame = pd.read_csv(source, sep="\t")
        rows = [
            {CURVE_STEP: int(step), column: float(value) if math.isfinite(value) else None}
            for step, value in zip(frame[CURVE_STEP], frame[column])
        ]
        write_json(out_dir / name, rows)
        written.append(out_dir / name)
    return written
