"""End to end: the real dvc.yaml, run by the real `dvc`, on a tiny data slice and a tiny BERT.

One project copy is built per module: `dvc repro` once, then the tests look at what it made and
change one thing at a time, in file order (the resume test goes last: it reshapes training).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import REPO_ROOT, write_mrpc_dataset
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from pair_classifier.tracking import PIPELINE_KEY_TAG

pytestmark = pytest.mark.slow  # `dvc repro` of the whole pipeline, stage processes

STAGES = (
    "prepare",
    "embed-train",
    "fit-classifier",
    "evaluate",
    "distill",
    "onnx",
    "quantize",
    "trt",
    "benchmark",
    "register",
    "results",
)
UNTRACKED_STAGES = {"results"}  # renders pages from metrics/; it logs no MLflow run
SLICE = {"train": 120, "val": 40, "test": 60}
TINY_TRAIN = {
    "epochs": 2,
    "batch_size": 16,
    "lr": 1.0e-4,
    "checkpoint_every_n_steps": 5,
    "num_threads": 1,
    "early_stopping_patience": 100,
    "log_every_n_steps": 2,
    # The default CPU precision is 32-true (fastest on CPUs without bf16 units); the test
    # exercises the mixed-precision path the config offers.
    "precision": {"cpu": "bf16-mixed", "cuda": "16-mixed"},
}
TINY_DISTILL = {
    "keep_layers": [1],
    "hidden_layers": [1],  # layer-wise, as by default
    "heads_per_layer": 1,
    "ffn_channels_per_layer": 32,
    "epochs": 1,
}
# Root-config overrides: tiny graphs run fastest on one thread, fewer latency samples, and
# system metrics sampled often enough that a few-second stage records some.
ONE_THREAD = """
export:
  threads: 1
benchmark:
  threads: 1
  latency_pairs: 20
  throughput_passes: 2
quantize:
  calibration_size: 64
tracking:
  system_metrics_interval_s: 0.5
"""
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}
KILL_TIMEOUT_S = 300


def _environment() -> dict[str, str]:
    env = dict(os.environ) | GIT_IDENTITY | {"DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def run(project: Path, *command: str) -> str:
    result = subprocess.run(
        command, cwd=project, env=_environment(), capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def stages_run(output: str) -> list[str]:
    return [stage for stage in STAGES if f"Running stage '{stage}'" in output]


def _copy_working_tree(target: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for name in listed:
        source = REPO_ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def _use_tiny_configs(project: Path, tiny_bert_dir: Path) -> None:
    """Tiny model and training as config groups, so `dvc exp run` composes them too."""
    model = yaml.safe_load((project / "configs/model/minilm_l6.yaml").read_text()) | {
        "name": "tiny",
        "pretrained": str(tiny_bert_dir),
        "hf_cache": None,
        "max_length": 32,
    }
    (project / "configs/model/tiny.yaml").write_text(yaml.safe_dump(model))
    train = yaml.safe_load((project / "configs/train/default.yaml").read_text()) | TINY_TRAIN
    (project / "configs/train/tiny.yaml").write_text(yaml.safe_dump(train))
    distill = yaml.safe_load((project / "configs/distill/default.yaml").read_text()) | TINY_DISTILL
    (project / "configs/distill/tiny.yaml").write_text(yaml.safe_dump(distill))
    root = project / "configs/config.yaml"
    text = root.read_text().replace("model: minilm_l6", "model: tiny")
    text = text.replace("train: default", "train: tiny").replace(
        "distill: default", "distill: tiny"
    )
    root.write_text(text.replace("_self_", "_self_\n" + ONE_THREAD))
    with initialize_config_dir(config_dir=str(project / "configs"), version_base=None):
        OmegaConf.save(compose(config_name="config"), project / "params.yaml")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("project")
    _copy_working_tree(root)
    for generated in ("dvc.lock", "data.dvc"):
        (root / generated).unlink(missing_ok=True)
    write_mrpc_dataset(root / "data/mrpc", SLICE)
    _use_tiny_configs(root, tiny_bert_dir)
    run(root, "git", "init", "-q", "-b", "main")
    run(root, "dvc", "add", "-q", "data")
    run(root, "git", "add", "-A")
    run(root, "git", "commit", "-qm", "tiny project")
    output = run(root, "dvc", "repro")
    assert stages_run(output) == list(STAGES)
    return root


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_compression_chain_outputs(project: Path) -> None:
    distill = _json(project / "metrics/distill.json")
    assert distill["heads_per_layer"] == [1] and distill["ffn_channels_per_layer"] == [32]
    assert distill["student_parameters"] < distill["teacher_parameters"]
    assert (project / "dvclive/distill/plots/metrics/train/epoch/hidden.tsv").is_file()
    onnx = _json(project / "metrics/onnx.json")
    for model in ("teacher", "student", "student_optimized"):
        assert onnx[model]["prediction_agreement"] == 1.0
        assert onnx[model]["max_abs_score_diff"] <= 1e-4
    quantize = _json(project / "metrics/quantize.json")
    assert quantize["int8_static"]["max_abs_probability_diff_batch1_vs_batched"] <= 1e-3
    assert _json(project / "metrics/trt.json") == {"skipped": "no CUDA device"}
    benchmark = _json(project / "metrics/benchmark.json")
    assert set(benchmark["variants"]) == {
        "pytorch_fp32_teacher",
        "pytorch_fp32_student",
        "onnx_fp32_teacher",
        "onnx_fp32_student",
        "onnx_optimized_student",
        "onnx_int8_dynamic_student",
        "onnx_int8_dynamic_optimized_student",
        "onnx_int8_static_student",
    }
    assert benchmark["speedup_vs_pytorch_fp32_teacher"]["pytorch_fp32_teacher"] == 1.0
    assert all(v["throughput_spread"] >= 0 for v in benchmark["variants"].values())
    rates = benchmark["matmul_rates"]["gmac_per_s"]
    assert set(rates) == {"pytorch_fp32", "onnx_fp32", "onnx_int8_dynamic"}
    assert all(rate > 0 for rate in rates.values())
    assert (project / "plots/benchmark/pareto.png").stat().st_size > 1000
    registered = _json(project / "metrics/register.json")
    assert (registered["version"], registered["alias"]) == (1, "champion")
    card = _json(project / "artifacts/onnx/model.json")
    assert card["class_names"] == ["not_paraphrase", "paraphrase"]
    assert (project / "artifacts/onnx/tokenizer/tokenizer.json").is_file()


def test_repro_writes_metrics_plots_and_model(project: Path) -> None:
    evaluation = _json(project / "metrics/evaluate.json")
    assert evaluation["pairs"] == SLICE["test"]
    for key in ("accuracy", "f1", "precision", "recall", "roc_auc"):
        assert 0.0 <= evaluation[key] <= 1.0
    assert sum(evaluation["confusion_matrix"]["paraphrase"].values()) == 40
    assert _json(project / "metrics/data.json")["splits"]["train"]["pairs"] == SLICE["train"]
    train = _json(project / "metrics/train.json")
    assert train["global_step"] == TINY_TRAIN["epochs"] * math.ceil(SLICE["train"] / 16)
    assert train["precision"] == TINY_TRAIN["precision"]["cpu"]
    for png in ("evaluate/confusion_matrix.png", "evaluate/roc.png", "train/loss.png"):
        assert (project / "plots" / png).stat().st_size > 1000
    for part in ("bi_encoder/encoder/config.json", "bi_encoder/head.pt", "classifier/svm.joblib"):
        assert (project / "artifacts/teacher" / part).is_file()
    metrics = json.loads(run(project, "dvc", "metrics", "show", "--json"))
    assert "metrics/evaluate.json" in json.dumps(metrics)
    plots = json.loads(run(project, "dvc", "plots", "show", "--json"))["data"]
    assert {"Loss", "ROC", "Precision-recall", "Confusion matrix"} <= set(plots)
    assert '"fpr"' in json.dumps(plots["ROC"]) and '"step"' in json.dumps(plots["Loss"])


def test_predict_command_scores_the_example_file(project: Path) -> None:
    output = project / "predictions.csv"
    run(
        project,
        "pair-classifier",
        "predict",
        "artifacts/teacher",
        "examples/pairs.jsonl",
        str(output),
    )
    lines = output.read_text(encoding="utf-8").splitlines()
    assert (
        lines[0]
        == "text_a,text_b,predicted_label,probability_not_paraphrase,probability_paraphrase"
    )
    assert len(lines) == 5


def test_second_repro_runs_nothing(project: Path) -> None:
    output = run(project, "dvc", "repro")
    assert stages_run(output) == []


def test_mlflow_run_holds_params_metrics_lineage_and_artifacts(project: Path) -> None:
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("pair-classifier")
    runs = client.search_runs([experiment.experiment_id])
    (pipeline,) = [r for r in runs if PIPELINE_KEY_TAG in r.data.tags]
    head = run(project, "git", "rev-parse", "HEAD").strip()
    data_md5 = yaml.safe_load((project / "data.dvc").read_text())["outs"][0]["md5"]
    assert pipeline.data.tags["git.commit"] == head
    assert pipeline.data.tags["git.dirty"] == "false"
    assert pipeline.data.tags["data.md5"] == data_md5
    assert pipeline.data.params["train.lr"] == str(TINY_TRAIN["lr"])
    assert pipeline.data.params["model.pretrained"].endswith("tiny-bert0")
    children = {
        r.data.tags["stage"]: r
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == pipeline.info.run_id
    }
    assert set(children) == set(STAGES) - UNTRACKED_STAGES
    training = children["embed-train"]
    assert len(client.get_metric_history(training.info.run_id, "train_loss_step")) > 5
    assert "val_acc" in training.data.metrics
    assert any(name.startswith("system/cpu") for name in training.data.metrics)
    assert 0 <= children["evaluate"].data.metrics["test.accuracy"] <= 1
    artifacts = {a.path for a in client.list_artifacts(training.info.run_id)}
    assert {"checkpoints", "model"} <= artifacts
    checkpoints = [a.path for a in client.list_artifacts(training.info.run_id, "checkpoints")]
    assert checkpoints == ["checkpoints/best.ckpt"]


def test_dvc_exp_run_with_a_set_param(project: Path) -> None:
    output = run(project, "dvc", "exp", "run", "-S", "evaluate.roc_points=11")
    assert stages_run(output) == ["evaluate", "results"]  # the ROC plot data changed
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["evaluate"]["roc_points"] == 11
    assert params["train"]["epochs"] == TINY_TRAIN["epochs"]  # the rest composed from configs
    assert len(_json(project / "plots/evaluate/roc.json")) <= 11
    shown = json.dumps(json.loads(run(project, "dvc", "exp", "show", "--json")))
    assert '"roc_points": 11' in shown


def test_changing_an_evaluate_param_reruns_only_evaluate(project: Path) -> None:
    params_file = project / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params["evaluate"]["batch_size"] = 8
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    # results reruns only if evaluate's figures moved with the batch size
    assert stages_run(run(project, "dvc", "repro")) in (["evaluate"], ["evaluate", "results"])


def test_changing_a_quantize_param_reruns_only_what_follows(project: Path) -> None:
    params_file = project / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params["quantize"]["per_channel"] = False
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    assert stages_run(run(project, "dvc", "repro")) == [
        "quantize",
        "trt",
        "benchmark",
        "register",  # a new graph: a new registered version
        "results",
    ]


def _tree_digest(folder: Path) -> dict[str, bytes]:
    return {str(f.relative_to(folder)): f.read_bytes() for f in folder.rglob("*") if f.is_file()}


def test_a_diverged_distillation_fails_and_keeps_the_previous_student(project: Path) -> None:
    params_file = project / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    params["distill"] |= {"lr": 1.0e30, "head_lr": 1.0e30}  # diverges within one step
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    student, metrics = _tree_digest(project / "artifacts/student"), _tree_digest(
        project / "metrics"
    )
    try:
        result = subprocess.run(
            [sys.executable, "-m", "stages.distill"],
            cwd=project,
            env=_environment(),
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        params_file.write_text(original)
    assert result.returncode == 2, result.stderr
    assert "training diverged" in result.stderr and "previous model is kept" in result.stderr
    assert "Traceback" not in result.stderr
    assert _tree_digest(project / "artifacts/student") == student
    assert _tree_digest(project / "metrics") == metrics
    # Only its own logs and checkpoints record the failed run: DVC redoes distill alone, which
    # gives back the same student, so no model stage after it reruns (the results page may:
    # distill's metrics record how long it took, to a tenth of a second).
    rerun = stages_run(run(project, "dvc", "repro"))
    assert [stage for stage in rerun if stage != "results"] == ["distill"]
    assert _tree_digest(project / "artifacts/student") == student


def _wait_for_new_checkpoint(path: Path, process: subprocess.Popen, after: float) -> None:
    """Until this training (not an earlier one) has written ``path``."""
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while not (path.exists() and path.stat().st_mtime > after):
        assert process.poll() is None, "training ended before writing a checkpoint"
        assert time.monotonic() < deadline, f"no new {path} after {KILL_TIMEOUT_S} s"
        time.sleep(0.1)


def test_killed_training_resumes_from_the_last_checkpoint(project: Path) -> None:
    params_file = project / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params["train"] |= {"epochs": 4, "batch_size": 4, "lr": 5.0e-5}  # a longer training
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    last = project / "checkpoints/embed-train/last.ckpt"
    started = time.time()
    process = subprocess.Popen(
        ["dvc", "repro", "embed-train"],
        cwd=project,
        env=_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for_new_checkpoint(last, process, started)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    state = _json(project / "checkpoints/embed-train/state.json")
    assert state["completed"] is False
    output = run(project, "dvc", "repro", "embed-train")
    assert "Restoring states from the checkpoint" in output
    train = _json(project / "metrics/train.json")
    assert train["resumed_from_step"] >= TINY_TRAIN["checkpoint_every_n_steps"]
    assert train["epochs"] == 4
    assert _json(project / "checkpoints/embed-train/state.json")["completed"] is True
