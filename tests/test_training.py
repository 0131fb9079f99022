"""Resuming the teacher's training: which checkpoints belong to which training."""

from __future__ import annotations

import copy
import dataclasses
import logging
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import yaml
from helpers import REPO_ROOT, composed, composed_params, pairs_frame
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger

from pair_classifier import training
from pair_classifier.config import ConfigError, DataConfig, ModelConfig, TrainConfig
from pair_classifier.constants import CHECKPOINT_STATE, SPLIT_SUFFIX
from pair_classifier.io_utils import read_json, write_json
from pair_classifier.training import plan_run, train_bi_encoder, training_fingerprint
from pair_classifier.training_loggers import training_loggers, write_curve_data

STAGE = "embed-train"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The real dvc.yaml, beside a small stand-in for each of embed-train's deps."""
    shutil.copy(REPO_ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    stage = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"][STAGE]
    for dep in stage["deps"]:
        path = tmp_path / dep
        if Path(dep).suffix:  # a file
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{dep}\n", encoding="utf-8")
        else:  # a folder
            path.mkdir(parents=True, exist_ok=True)
            (path / "part").write_text(f"{dep}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _changed(params: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(params)
    *path, last = key.split(".")
    section = changed
    for part in path:
        section = section[part]
    section[last] = value
    return changed


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("data.symmetric", False),
        ("data.positive_label", "not_paraphrase"),
        ("train.lr", 1.0e-3),
        ("model.max_length", 64),
        ("seed", 7),
    ],
)
def test_every_setting_of_the_stage_is_in_the_fingerprint(
    project: Path, key: str, value: Any
) -> None:
    params = composed_params()
    assert training_fingerprint(STAGE, params) != training_fingerprint(
        STAGE, _changed(params, key, value)
    )


def test_settings_and_files_outside_the_stage_leave_the_fingerprint_alone(project: Path) -> None:
    params = composed_params()
    before = training_fingerprint(STAGE, params)
    assert training_fingerprint(STAGE, _changed(params, "quantize.calibration_size", 3)) == before
    cache = project / "pair_classifier/model/__pycache__"
    cache.mkdir()
    (cache / "x.pyc").write_bytes(b"\0")
    assert training_fingerprint(STAGE, params) == before


def test_changed_prepared_data_or_code_changes_the_fingerprint(project: Path) -> None:
    params = composed_params()
    before = training_fingerprint(STAGE, params)
    (project / "artifacts/prepared/part").write_text("other pairs\n", encoding="utf-8")
    after_data = training_fingerprint(STAGE, params)
    (project / "pair_classifier/training.py").write_text("# changed\n", encoding="utf-8")
    assert len({before, after_data, training_fingerprint(STAGE, params)}) == 3


def test_a_param_missing_from_params_yaml_is_named(project: Path) -> None:
    params = composed_params()
    del params["data"]["symmetric"]
    with pytest.raises(ConfigError, match=r"'embed-train'.*'data.symmetric'"):
        training_fingerprint(STAGE, params)


def _killed_run(checkpoints: Path, fingerprint: str) -> Path:
    """What a training killed mid-way leaves: an unfinished state and its last checkpoint."""
    checkpoints.mkdir(parents=True)
    write_json(checkpoints / CHECKPOINT_STATE, {"fingerprint": fingerprint, "completed": False})
    last = checkpoints / "last.ckpt"
    last.write_bytes(b"state")
    return last


def test_a_changed_setting_starts_afresh_and_an_unchanged_one_resumes(project: Path) -> None:
    params = composed_params()
    checkpoints = project / "checkpoints/embed-train"
    last = _killed_run(checkpoints, training_fingerprint(STAGE, params))
    assert plan_run(checkpoints, training_fingerprint(STAGE, params)).resume_from == last
    changed = training_fingerprint(STAGE, _changed(params, "data.symmetric", False))
    assert plan_run(checkpoints, changed).resume_from is None
    assert not last.exists()


def _plot_files(plots: list[Any]) -> list[str]:
    """The data files dvc.yaml's top-level ``plots:`` reads."""
    files: list[str] = []
    for plot in plots:
        if isinstance(plot, str):
            files.append(plot)
            continue
        ((name, spec),) = plot.items()
        y = (spec or {}).get("y")
        files += list(y) if isinstance(y, dict) else [name]
    return files


def _uncached_outputs(stages: dict[str, Any]) -> list[Path]:
    """Outputs (outs, metrics, plots) marked ``cache: false``: in git, not only in DVC's cache."""
    found = []
    for stage in stages.values():
        for kind in ("outs", "metrics", "plots"):
            for out in stage.get(kind, []):
                if isinstance(out, dict):
                    ((path, options),) = out.items()
                    if options and options.get("cache") is False:
                        found.append(Path(path))
    return found


def test_every_plot_reads_files_kept_in_git() -> None:
    """On a fresh clone only git's files exist: a plot reading DVC-cached data fails to load."""
    pipeline = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    uncached = _uncached_outputs(pipeline["stages"])
    tracked = set(
        subprocess.run(
            ["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.splitlines()
    )
    outside_git = [
        file
        for file in _plot_files(pipeline["plots"])
        if file not in tracked and not any(Path(file).is_relative_to(out) for out in uncached)
    ]
    assert outside_git == []


def test_curve_data_is_copied_without_timestamps(tmp_path: Path) -> None:
    metrics = tmp_path / "dvclive/plots/metrics"
    (metrics / "train/step").mkdir(parents=True)
    (metrics / "val").mkdir()
    (metrics / "train/step/loss.tsv").write_text("timestamp\tstep\tloss\n1\t0\t0.7\n2\t1\t0.5\n")
    (metrics / "val/acc.tsv").write_text("timestamp\tstep\tacc\n3\t1\tnan\n")
    written = write_curve_data(tmp_path / "dvclive", tmp_path / "plots")
    assert [path.name for path in written] == ["train_loss.json", "val_acc.json"]
    assert read_json(tmp_path / "plots/train_loss.json") == [
        {"step": 0, "loss": 0.7},
        {"step": 1, "loss": 0.5},
    ]
    assert read_json(tmp_path / "plots/val_acc.json") == [{"step": 1, "acc": None}]


class _Killed(RuntimeError):
    """Stands for a kill: the process stops with the checkpoints as they are on disk."""


class _KillAt(Callback):
    """Stops training before step ``step`` runs (after the checkpoints of earlier steps)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            raise _Killed(f"killed before step {self.step}")


def _train(
    prepared: Path, checkpoints: Path, model: ModelConfig, kill_at: int | None = None
) -> dict[str, torch.Tensor]:
    """Train (or resume) as embed-train does; the final full state's weights."""
    train = composed(
        "train",
        TrainConfig,
        epochs=2,
        batch_size=4,
        checkpoint_every_n_steps=6,  # 15 batches an epoch: last.ckpt mid-epoch at 6, 12, 18, 24
        num_threads=1,
        early_stopping_patience=100,
        accelerator="cpu",
    )
    data = composed("data", DataConfig, "data=mrpc")  # symmetric: pairs are swapped at random
    run = plan_run(checkpoints, "same training")
    original = training.make_trainer

    def with_kill(*args: Any, **kwargs: Any) -> Any:
        trainer, best = original(*args, **kwargs)
        if kill_at is not None:
            trainer.callbacks.insert(0, _KillAt(kill_at))
        return trainer, best

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "make_trainer", with_kill)
        train_bi_encoder(prepared, run, model, train, data, 0, [CSVLogger(checkpoints / "logs")])
    return torch.load(run.last, map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", [8, 20])  # mid-epoch in the first and in the second epoch
def test_a_run_killed_mid_epoch_resumes_to_the_same_weights(
    tmp_path: Path, tiny_bert_dir: Path, kill_at: int
) -> None:
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    frame = pairs_frame(60, 1)
    frame["text_a"] = [text * (1 + i % 4) for i, text in enumerate(frame["text_a"])]
    frame.to_parquet(prepared / f"train{SPLIT_SUFFIX}")
    pairs_frame(12, 2).to_parquet(prepared / f"val{SPLIT_SUFFIX}")
    model = dataclasses.replace(
        composed("model", ModelConfig),
        name="tiny",
        pretrained=str(tiny_bert_dir),
        max_length=32,
        dropout=0.1,  # dropout draws random numbers too
    )
    uninterrupted = _train(prepared, tmp_path / "uninterrupted", model)
    with pytest.raises(_Killed):
        _train(prepared, tmp_path / "killed", model, kill_at)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = _train(prepared, tmp_path / "killed", model)
    assert not [w for w in caught if "not resumable" in str(w.message)]
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)


def test_a_summary_cut_short_by_a_kill_does_not_stop_the_resume(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """DVCLive rewrites its summary in place: a kill during the rewrite leaves it empty, and
    DVCLive's resume would fail reading it."""
    dvclive_dir = tmp_path / "dvclive"
    dvclive_dir.mkdir()
    (dvclive_dir / "metrics.json").write_text("")
    with caplog.at_level(logging.WARNING, logger="pair_classifier.training_loggers"):
        dvclive = training_loggers(dvclive_dir, True, None, "")[0]
        dvclive.experiment  # DVCLive reads the summary back here
    assert "metrics.json was cut short by the kill" in caplog.text
