"""The results page and the README's headline block are generated from metrics/ and plots/:
the committed ones must be what the committed metrics give, and they follow the metrics."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from helpers import REPO_ROOT
from typer.testing import CliRunner

from pair_classifier.cli import app
from pair_classifier.constants import COVERAGE_METRICS, README, RESULTS_PAGE
from pair_classifier.errors import PairClassifierError
from pair_classifier.results_page import (
    README_END,
    README_START,
    coverage_totals,
    stale_files,
    write_results,
)

COVERAGE_REPORT = {
    "meta": {"version": "7.6.1"},
    "files": {},
    "totals": {"covered_lines": 850, "num_statements": 1000, "percent_covered": 85.0123},
}


def test_committed_pages_are_what_the_committed_metrics_give() -> None:
    stale = stale_files(REPO_ROOT)
    assert not stale, f"{stale} differ from metrics/: run `pair-classifier results` and commit"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the committed metrics, plots and README, pages rendered once."""
    for folder in ("metrics", "plots"):
        shutil.copytree(REPO_ROOT / folder, tmp_path / folder)
    shutil.copy2(REPO_ROOT / README, tmp_path / README)
    write_results(tmp_path)
    return tmp_path


def _edit_json(path: Path, change: dict) -> None:
    path.write_text(json.dumps(json.loads(path.read_text(encoding="utf-8")) | change))


def test_a_changed_metric_changes_the_page_and_the_headline(project: Path) -> None:
    assert stale_files(project) == []
    _edit_json(project / "metrics/evaluate.json", {"f1": 0.1234})
    assert stale_files(project) == [RESULTS_PAGE, README]
    write_results(project)
    assert "0.1234" in (project / RESULTS_PAGE).read_text(encoding="utf-8")
    readme = (project / README).read_text(encoding="utf-8")
    assert "0.1234" in readme.split(README_START)[1].split(README_END)[0]
    assert stale_files(project) == []


def test_rendering_twice_gives_the_same_text(project: Path) -> None:
    first = (project / RESULTS_PAGE).read_bytes()
    write_results(project)
    assert (project / RESULTS_PAGE).read_bytes() == first


def test_absent_keys_and_files_render_as_not_recorded(tmp_path: Path) -> None:
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/benchmark.json").write_text(json.dumps({"variants": {}}))
    (tmp_path / "metrics/quantize.json").write_text(json.dumps({"int8_static": {"val": {}}}))
    (tmp_path / README).write_text(f"# x\n\n{README_START}\n{README_END}\n")
    write_results(tmp_path)
    page = (tmp_path / RESULTS_PAGE).read_text(encoding="utf-8")
    assert "did not record the machine" in page and "Coverage not recorded" in page
    assert "not recorded" in (tmp_path / README).read_text(encoding="utf-8")


def test_rejected_and_served_variants_are_marked_with_the_benchmark_s_reason(
    project: Path,
) -> None:
    _edit_json(
        project / "metrics/quantize.json",
        {
            "rejected": {
                "int8_dynamic": {"reason": "accuracy dropped by 0.0121", "accuracy_drop": 0.0121}
            },
        },
    )
    served = {
        "variant": "int8_static",
        "graph": "artifacts/quantized/student.int8_static.onnx",
        "reason": "int8_static: the fastest eligible graph (612.5 pairs/s)",
        "rule": {"f1_reference": "onnx_fp32_student", "min_f1_kept": 0.99, "batch_size": 32},
        "candidates": {
            "fp32": {"throughput_pairs_per_s": 300.0, "f1": 0.85, "left_out": None},
            "int8_static": {"throughput_pairs_per_s": 612.5, "f1": 0.849, "left_out": None},
            "int8_dynamic_optimized": {"throughput_pairs_per_s": 700.0, "left_out": "batch"},
        },
    }
    _edit_json(project / "metrics/benchmark.json", {"served": served})
    write_results(project)
    page = (project / RESULTS_PAGE).read_text(encoding="utf-8")
    assert "| `int8_dynamic`           | rejected  |" in page
    assert "- `int8_dynamic`: accuracy dropped by 0.0121" in page
    assert "| `int8_static`            | served    |" in page
    assert (
        "Served graph: `int8_static` (`artifacts/quantized/student.int8_static.onnx`). Why: "
        "int8_static: the fastest eligible graph (612.5 pairs/s)." in page
    )
    assert re.search(r"\| `int8_dynamic_optimized` \| left out +\| 700\.0 ", page)
    assert re.search(r"\| `fp32` +\| eligible +\| 300\.0 ", page)
    readme = (project / README).read_text(encoding="utf-8")
    assert "`onnx_int8_static_student`" in readme


def test_the_machine_is_described_from_the_benchmark_record(project: Path) -> None:
    """The page lists every flag; the README's headline only those that decide int8 speed."""
    machine = {"processor": "AMD EPYC 7B13", "cpu_flags": ["avx2", "avx512_vnni", "fma"]}
    _edit_json(project / "metrics/benchmark.json", {"machine": machine})
    write_results(project)
    page = (project / RESULTS_PAGE).read_text(encoding="utf-8")
    assert "AMD EPYC 7B13" in page and "avx2, avx512_vnni, fma" in page
    readme = (project / README).read_text(encoding="utf-8")
    assert re.search(r"\| benchmark machine's CPU flags +\| avx2, avx512_vnni +\|", readme)


def test_a_coverage_report_refreshes_metrics_coverage(project: Path) -> None:
    report = project / ".coverage.json"
    report.write_text(json.dumps(COVERAGE_REPORT))
    assert RESULTS_PAGE in stale_files(project, report)
    write_results(project, report)
    assert json.loads((project / COVERAGE_METRICS).read_text()) == {
        "percent_covered": 85.01,
        "covered_lines": 850,
        "num_statements": 1000,
    }
    assert "85.01 % (850 of 1000 statements)" in (project / RESULTS_PAGE).read_text()
    assert stale_files(project) == []


def test_a_report_without_totals_is_refused_naming_it(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"totals": {"covered_lines": 1}}))
    with pytest.raises(PairClassifierError, match="report.json.*percent_covered, num_statements"):
        coverage_totals(report)


def test_a_readme_without_the_markers_is_refused_naming_it(project: Path) -> None:
    (project / README).write_text("# no markers\n")
    with pytest.raises(PairClassifierError, match="README.md: needs a <!-- results:start -->"):
        write_results(project)


def test_check_names_the_stale_files_and_writes_nothing(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    runner = CliRunner()
    assert runner.invoke(app, ["results", "--check"]).exit_code == 0
    _edit_json(project / "metrics/benchmark.json", {"fastest_keeping_f1": "onnx_fp32_student"})
    before = (project / RESULTS_PAGE).read_bytes()
    result = runner.invoke(app, ["results", "--check"])
    assert result.exit_code == 1
    assert "docs/results.md" in result.output and "README.md" in result.output
    assert (project / RESULTS_PAGE).read_bytes() == before
    assert runner.invoke(app, ["results"]).exit_code == 0
    assert runner.invoke(app, ["results", "--check"]).exit_code == 0


def test_the_load_test_is_tabled_with_its_ratios_and_soak(project: Path) -> None:
    serving = {
        "pairs": 100,
        "split": "test",
        "model": "models:/pair-classifier/3",
        "targets": {
            "triton": {"16": {"clients": 16, "throughput_req_per_s": 300.0, "p99_ms": 80.0}},
            "mlflow": {"16": {"clients": 16, "throughput_req_per_s": 100.0, "p99_ms": 400.0}},
        },
        "at_16_clients": {"throughput_ratios": {"triton_vs_mlflow": 3.0}, "triton_p99_ms": 80.0},
        "soak": {"target": "triton_soak", "clients": 64, "requests": 900, "failures": 0},
    }
    (project / "metrics/serving.json").write_text(json.dumps(serving), encoding="utf-8")
    write_results(project)
    page = (project / RESULTS_PAGE).read_text(encoding="utf-8")
    assert re.search(r"\| `mlflow` +\| 16 +\| 100\.0 ", page)
    assert "Triton's throughput over the others': mlflow 3.00×; Triton's p99 80 ms" in page
    assert "at 64 clients for n/a s: 0 failed of 900" in page
    readme = (project / README).read_text(encoding="utf-8")
    assert re.search(r"\| Triton at 16 clients.*\| 3\.00× mlflow; 80 ms +\|", readme)
