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
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from helpers import REPO_ROOT, composed, write_mrpc_dataset
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from services.team_services import bucket_keys, client_environment, postgres_rows

from pair_classifier.export.onnx_predictor import OnnxPairPredictor
from pair_classifier.export.served import benchmark_name, served_graph, served_model
from pair_classifier.registry.lineage import lock_outputs
from pair_classifier.registry.register import SPEED, headline_metrics, register_served_model
from pair_classifier.registry.settings import RegisterConfig
from pair_classifier.services.settings import ServicesConfig
from pair_classifier.serving.triton_server import TRITON_ENV
from pair_classifier.tracking import PIPELINE_KEY_TAG, current_lineage

PYCACHE = "__pycache__"

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
    "triton-repo",
    "load-test",
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
# Root-config overrides: tiny graphs run fastest on one thread, fewer latency samples, a load
# test of seconds, and system metrics sampled often enough that a few-second stage records some.
ONE_THREAD = """
loadtest:
  pairs: 20
  clients: [1, 4]
  compared_at: 4
  point_duration_s: 2
  warmup_requests: 2
  soak_clients: 4
  soak_duration_s: 2
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
TEAM_ENV: dict[str, str] = {}  # the session's team services, for every stage process


@pytest.fixture(scope="module", autouse=True)
def _team_services(team_services: ServicesConfig) -> Iterator[None]:
    """Stages track into the team services: runs in PostgreSQL, artifacts in S3."""
    TEAM_ENV.update(client_environment(team_services))
    yield
    TEAM_ENV.clear()


def _environment() -> dict[str, str]:
    env = dict(os.environ) | GIT_IDENTITY | {"DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.pop("MLFLOW_TRACKING_URI", None)
    return env | TEAM_ENV


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
    # The Triton server's environment is git-ignored: the copy's `serve triton` uses this one.
    (target / TRITON_ENV.relative_to(REPO_ROOT)).symlink_to(TRITON_ENV, target_is_directory=True)


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
    client = MlflowClient(tracking_uri=TEAM_ENV["MLFLOW_TRACKING_URI"])
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
        "triton-repo",  # served under that version
        "load-test",
        "results",
    ]


def _tree_digest(folder: Path) -> dict[str, bytes]:
    """Every file's bytes, leaving out byte code (Triton writes it beside the repository's
    model.py; .dvcignore keeps it out of DVC's hashes)."""
    return {
        str(f.relative_to(folder)): f.read_bytes()
        for f in folder.rglob("*")
        if f.is_file() and PYCACHE not in f.parts
    }


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


def test_runs_land_in_postgresql_with_their_artifacts_in_s3(
    project: Path, team_services: ServicesConfig
) -> None:
    assert not (project / "mlflow.db").exists()  # nothing went to the embedded store
    client = MlflowClient(team_services.mlflow.url)
    runs = client.search_runs([client.get_experiment_by_name("pair-classifier").experiment_id])
    stage_runs = {r.data.tags.get("stage"): r.info.run_id for r in runs}
    rows = postgres_rows(
        team_services, "SELECT status FROM runs WHERE run_uuid = %s", stage_runs["embed-train"]
    )
    assert rows == [("FINISHED",)]
    keys = bucket_keys(team_services, f"{team_services.s3.mlflow_prefix}/")
    assert any(stage_runs["embed-train"] in k and k.endswith("best.ckpt") for k in keys)
    assert any(stage_runs["register"] in k and k.endswith("lineage/dvc.lock") for k in keys)
    assert any("/served/" in key and key.endswith(".onnx") for key in keys)  # the registered


MODEL = "pair-classifier"
# Outputs a rebuild must give bit-identical (the benchmark's record holds timings, so it differs).
MODEL_OUTPUTS = {
    "artifacts/prepared",
    "artifacts/teacher/bi_encoder",
    "artifacts/teacher/classifier",
    "artifacts/student",
    "artifacts/onnx",
    "artifacts/quantized",
}


@pytest.fixture(scope="module")
def clone(
    project: Path, team_services: ServicesConfig, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The project as it is now, committed and pushed to the team remote, cloned fresh and
    filled by `dvc pull` from S3 alone."""
    endpoint = ("dvc", "remote", "modify", "--local", "team", "endpointurl")
    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-qm", "the tiny run")
    run(project, *endpoint, team_services.s3.endpoint_url)
    run(project, "dvc", "push", "-r", "team")
    target = tmp_path_factory.mktemp("clone") / "project"
    run(project, "git", "clone", "-q", str(project), str(target))
    run(target, *endpoint, team_services.s3.endpoint_url)
    run(target, "dvc", "pull", "-r", "team")
    return target


def test_dvc_push_then_pull_into_a_fresh_clone_gives_identical_files(
    project: Path, clone: Path
) -> None:
    assert (clone / "dvc.lock").read_bytes() == (project / "dvc.lock").read_bytes()
    for folder in ("data", "artifacts"):
        assert _tree_digest(clone / folder) == _tree_digest(project / folder)


def _lineage(project: Path, reference: str) -> dict:
    result = subprocess.run(
        ["pair-classifier", "lineage", reference, "--json"], cwd=project, env=_environment(),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_lineage_traces_the_champion_to_its_commit_data_and_outputs(project: Path) -> None:
    champion = MlflowClient(TEAM_ENV["MLFLOW_TRACKING_URI"]).get_model_version_by_alias(
        MODEL, "champion"
    )
    found = _lineage(project, f"models:/{MODEL}@champion")
    assert found == _lineage(project, champion.version)  # by alias or by number
    first = run(project, "git", "rev-list", "--max-parents=0", "HEAD").strip()
    assert (found["version"], found["git_commit"]) == (champion.version, first)
    assert found["data_md5"] == yaml.safe_load((project / "data.dvc").read_text())["outs"][0]["md5"]
    assert found["metrics"]["f1"] == float(champion.tags["metric.f1"])
    assert found["params"]["train.epochs"] == TINY_TRAIN["epochs"]
    assert {"prepare", "embed-train", "distill", "onnx", "quantize"} <= set(found["outputs"])
    assert "register" not in found["outputs"]  # what built it, not what came after
    assert f"git checkout {first}" in found["rebuild"]
    assert found["rebuild"][-2:] == ["dvc pull -r team --allow-missing", "dvc repro"]


def test_the_champion_rebuilt_from_its_lineage_scores_identically(
    project: Path, clone: Path
) -> None:
    found = _lineage(project, f"models:/{MODEL}@champion")
    for command in found["rebuild"][2:]:  # after `git clone` and `cd`: `clone` is that clone
        result = subprocess.run(
            command, shell=True, cwd=clone, env=_environment(), capture_output=True, text=True,
            check=False,
        )  # fmt: skip
        assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    rebuilt = lock_outputs(yaml.safe_load((clone / "dvc.lock").read_text()))
    compared = [
        (path, md5, rebuilt[stage][path])
        for stage, outputs in found["outputs"].items()
        for path, md5 in outputs.items()
        if path in MODEL_OUTPUTS
    ]
    assert {path for path, _, _ in compared} == MODEL_OUTPUTS
    assert [(path, a) for path, a, _ in compared] == [(path, b) for path, _, b in compared]
    variant = found["served_variant"]  # the rebuild's benchmark may serve another: it times them
    graph = served_graph(variant, clone / "artifacts/onnx", clone / "artifacts/quantized")
    figures = _json(clone / "metrics/benchmark.json")["variants"][benchmark_name(variant)]
    assert figures["f1"] == found["metrics"]["f1"]
    pairs = pd.read_json(clone / "examples/pairs.jsonl", lines=True)[["text_a", "text_b"]]
    mlflow.set_tracking_uri(TEAM_ENV["MLFLOW_TRACKING_URI"])
    try:  # the registered files, from S3 through the tracking server
        registered = mlflow.pyfunc.load_model(f"models:/{MODEL}/{found['version']}")
    finally:
        mlflow.set_tracking_uri(None)
    expected = OnnxPairPredictor(graph, 8, 1).predict(pairs)  # predict's columns
    pd.testing.assert_frame_equal(registered.predict(pairs)[list(expected.columns)], expected)
    record = _json(clone / "metrics/register.json")  # the rebuild registered its graph too
    assert record["previous_champion"] == int(found["version"])  # compared on the server
    if record["served_variant"] == variant:  # an equal f1 does not take the champion's place
        assert record["alias"] == "challenger"
        assert f"does not beat the champion (version {found['version']})" in (
            record["champion_decision"]
        )


def test_a_better_version_takes_the_champion_alias_on_the_server(
    clone: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = MlflowClient(TEAM_ENV["MLFLOW_TRACKING_URI"])
    champion = client.get_model_version_by_alias(MODEL, "champion")
    monkeypatch.chdir(clone)
    served = served_model(
        Path("metrics/benchmark.json"), Path("artifacts/onnx"), Path("artifacts/quantized")
    )
    better = {  # the champion's speed, a higher f1: the rule must promote it
        "f1": float(champion.tags["metric.f1"]) + 0.01,
        SPEED: float(champion.tags[f"metric.{SPEED}"]),
    }
    headline = headline_metrics(Path("metrics/benchmark.json"), served) | better
    mlflow.set_tracking_uri(TEAM_ENV["MLFLOW_TRACKING_URI"])
    try:
        with mlflow.start_run(experiment_id=client.get_experiment_by_name(MODEL).experiment_id):
            record = register_served_model(
                served, headline, composed("register", RegisterConfig), current_lineage()
            )
    finally:
        mlflow.set_tracking_uri(None)
    assert (record["alias"], record["previous_champion"]) == ("champion", int(champion.version))
    assert f"beats the champion (version {champion.version})" in record["champion_decision"]
    aliases = client.get_registered_model(MODEL).aliases
    assert str(aliases["champion"]) == str(record["version"])


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
