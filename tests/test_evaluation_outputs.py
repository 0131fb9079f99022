"""Plot folders are swapped in whole (a failure leaves the previous plots, not a mix), and an
evaluation split with one class writes valid JSON that says why ROC is missing, never NaN."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers import REPO_ROOT
from matplotlib.figure import Figure

from pair_classifier import plots
from pair_classifier.benchmark import report
from pair_classifier.constants import (
    BENCHMARK_PARETO_DATA,
    BENCHMARK_PARETO_PNG,
    BENCHMARK_PLOTS_DIR,
    EVALUATE_PLOTS_DIR,
)
from pair_classifier.evaluation import (
    CURVES_SKIPPED,
    ROC_AUC_UNDEFINED,
    evaluation_report,
    score_predictions,
)
from pair_classifier.io_utils import FILE_MODE, write_json
from pair_classifier.plots import save_figure, write_evaluation

CLASSES = ["not_paraphrase", "paraphrase"]
POSITIVE = 1
ROC_POINTS = 11
PAIRS = 40
PNG_SIGNATURE = b"\x89PNG"


def _split(seed: int, labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Labels (both classes unless given) and two-class probabilities that roughly follow them."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, PAIRS) if labels is None else labels
    positive = np.clip(0.6 * y_true + 0.4 * rng.random(len(y_true)), 0.0, 1.0)
    return y_true, np.column_stack([1.0 - positive, positive])


def _contents(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def _strict_json(path: Path) -> Any:
    """Parse as a strict reader would: NaN and Infinity are errors, not numbers."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{path}: {constant} is not JSON")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def _dvc_plot_files(folder: Path) -> set[str]:
    """Names of the files under ``folder`` that dvc.yaml's top-level ``plots:`` reads."""
    plots = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["plots"]
    paths: set[str] = set()
    for entry in plots:
        if isinstance(entry, str):
            paths.add(entry)
        else:
            for definition in entry.values():
                paths |= set(definition["y"])
    return {Path(p).name for p in paths if Path(p).parent == folder}


def test_a_two_class_split_writes_every_plot_dvc_yaml_names(tmp_path: Path) -> None:
    y_true, probabilities = _split(seed=0)
    plots_dir = tmp_path / "evaluate"
    report = write_evaluation(y_true, probabilities, CLASSES, POSITIVE, ROC_POINTS, plots_dir)
    assert set(_contents(plots_dir)) == _dvc_plot_files(EVALUATE_PLOTS_DIR) | {plots.CONFUSION_DATA}
    assert 0.0 <= report["roc_auc"] <= 1.0
    assert ROC_AUC_UNDEFINED not in report and CURVES_SKIPPED not in report
    assert len(_strict_json(plots_dir / plots.ROC_DATA)) <= ROC_POINTS
    assert [p.name for p in tmp_path.iterdir()] == ["evaluate"]  # no staging folder left


def test_a_failure_part_way_leaves_the_previous_evaluation_plots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plots_dir = tmp_path / "evaluate"
    write_evaluation(*_split(seed=0), CLASSES, POSITIVE, ROC_POINTS, plots_dir)
    before = _contents(plots_dir)

    def fail(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(plots, "save_curve_png", fail)  # after the JSON and confusion PNG
    with pytest.raises(OSError, match="disk full"):
        write_evaluation(*_split(seed=1), CLASSES, POSITIVE, ROC_POINTS, plots_dir)
    assert _contents(plots_dir) == before
    assert [p.name for p in tmp_path.iterdir()] == ["evaluate"]


def test_a_failed_save_leaves_the_previous_png_whole(tmp_path: Path) -> None:
    path = tmp_path / "train" / "loss.png"
    save_figure(Figure(), path)
    before = path.read_bytes()
    assert before.startswith(PNG_SIGNATURE)
    assert path.stat().st_mode & 0o777 == FILE_MODE

    class Truncated(Figure):
        """A figure whose writer dies after the first bytes, as on a full disk."""

        def savefig(self, fname: Any, **kwargs: Any) -> None:
            Path(fname).write_bytes(PNG_SIGNATURE)
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_figure(Truncated(), path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["loss.png"]


# The committed run's variants: three fp32 students share one F1 within 0.1 decade of speed,
# where name labels overlapped into one unreadable clump.
CROWDED_VARIANTS = {
    "pytorch_fp32_teacher": (69.6, 0.8552),
    "pytorch_fp32_student": (231.4, 0.8462),
    "onnx_fp32_teacher": (87.0, 0.8552),
    "onnx_fp32_student": (264.1, 0.8462),
    "onnx_optimized_student": (294.5, 0.8462),
    "onnx_int8_dynamic_student": (324.2, 0.8475),
    "onnx_int8_dynamic_optimized_student": (393.2, 0.8445),
    "onnx_int8_static_student": (263.5, 0.8455),
}


def test_every_variant_of_the_pareto_plot_can_be_told_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One legend line per variant with its own marker and colour, and beside each point a
    number, not a name: no two labels drawn on the axes overlap."""
    results = {
        name: {"throughput_pairs_per_s": speed, "f1": f1, "accuracy": f1}
        for name, (speed, f1) in CROWDED_VARIANTS.items()
    }
    drawn: list[Figure] = []
    monkeypatch.setattr(plots, "save_figure", lambda figure, path: drawn.append(figure))
    plots.save_pareto_png(results, tmp_path / "pareto.png", batch_size=32)
    (figure,) = drawn
    figure.tight_layout()
    figure.draw_without_rendering()
    (axes,) = figure.axes
    legend = axes.get_legend()
    assert [text.get_text() for text in legend.get_texts()] == [
        f"{number}  {name}" for number, name in enumerate(results, start=1)
    ]
    styles = {
        (collection.get_paths()[0].vertices.tobytes(), collection.get_facecolor()[0].tobytes())
        for collection in axes.collections
    }
    assert len(styles) == len(results)  # marker and colour: no two variants alike
    labels = [text for text in axes.texts]
    assert [text.get_text() for text in labels] == [str(n) for n in range(1, len(results) + 1)]
    boxes = [text.get_window_extent() for text in labels]
    overlapping = [
        (labels[i].get_text(), labels[j].get_text())
        for i in range(len(boxes))
        for j in range(i + 1, len(boxes))
        if boxes[i].overlaps(boxes[j])
    ]
    assert not overlapping


def test_scoring_imports_no_matplotlib() -> None:
    """The metrics run in every stage (and each benchmark child): drawing is plots.py's job."""
    code = "import sys, pair_classifier.evaluation; print('matplotlib' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_the_pareto_json_and_png_are_swapped_in_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plots_dir = tmp_path / BENCHMARK_PLOTS_DIR.name
    results = {"teacher": {"throughput_pairs_per_s": 80.0, "f1": 0.85, "accuracy": 0.8}}
    report.write_pareto_plots(results, plots_dir, batch_size=32)
    before = _contents(plots_dir)
    assert set(before) == {BENCHMARK_PARETO_DATA.name, BENCHMARK_PARETO_PNG.name}
    assert _strict_json(plots_dir / BENCHMARK_PARETO_DATA.name)[0]["f1"] == 0.85

    def fail(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(report, "save_pareto_png", fail)  # after pareto.json
    faster = {"teacher": {"throughput_pairs_per_s": 90.0, "f1": 0.86, "accuracy": 0.81}}
    with pytest.raises(OSError, match="disk full"):
        report.write_pareto_plots(faster, plots_dir, batch_size=32)
    assert _contents(plots_dir) == before


@pytest.mark.parametrize("only_class", [0, 1])
def test_a_one_class_split_says_why_roc_is_missing_and_writes_no_nan(
    tmp_path: Path, only_class: int
) -> None:
    plots_dir = tmp_path / "evaluate"
    write_evaluation(*_split(seed=0), CLASSES, POSITIVE, ROC_POINTS, plots_dir)  # a earlier run
    y_true, probabilities = _split(seed=1, labels=np.full(PAIRS, only_class))
    report = write_evaluation(y_true, probabilities, CLASSES, POSITIVE, ROC_POINTS, plots_dir)

    assert report["roc_auc"] is None
    assert repr(CLASSES[1 - only_class]) in report[ROC_AUC_UNDEFINED]
    assert repr(CLASSES[POSITIVE]) in report[CURVES_SKIPPED]
    # No curve file at all, not even the earlier run's: an empty list breaks `dvc plots show`.
    assert set(_contents(plots_dir)) == {plots.CONFUSION_DATA, plots.CONFUSION_PNG}
    assert len(_strict_json(plots_dir / plots.CONFUSION_DATA)) == PAIRS
    metrics = tmp_path / "evaluate.json"
    write_json(metrics, report)
    assert _strict_json(metrics)["roc_auc"] is None


def test_one_vs_rest_roc_auc_with_a_class_absent_is_null_not_nan(tmp_path: Path) -> None:
    classes = ["a", "b", "c"]
    y_true = np.array([0, 2, 0, 2, 0, 2])
    probabilities = np.tile([0.5, 0.2, 0.3], (len(y_true), 1))
    y_pred = probabilities.argmax(axis=1)
    assert "roc_auc" not in score_predictions(y_true, y_pred, probabilities, classes, 0)
    report = evaluation_report(y_true, y_pred, probabilities, classes, 0)
    assert report["roc_auc"] is None and repr("b") in report[ROC_AUC_UNDEFINED]
    write_json(tmp_path / "metrics.json", report)  # strict: would refuse a NaN


def test_write_json_refuses_nan_naming_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "roc.json"
    write_json(path, [{"fpr": 0.0, "tpr": 0.0}])
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"roc\.json.*\$\[1\]\.tpr"):
        write_json(path, [{"fpr": 0.0, "tpr": 0.0}, {"fpr": 0.5, "tpr": float("nan")}])
    with pytest.raises(ValueError, match=r"\$\.scores\.roc_auc"):
        write_json(path, {"scores": {"roc_auc": np.float64("inf")}})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["roc.json"]
