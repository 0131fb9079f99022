"""docs/results.md and README.md's headline block, rendered from the committed metrics/ and plots/.

Figures typed by hand go stale the moment a stage reruns; these are generated instead, and a
test fails when the committed pages differ from what the committed metrics give. Nothing here
reads anything but metrics/*.json, the PNG files under plots/ and, on request, a coverage.py
JSON report (whose totals become metrics/coverage.json).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pair_classifier.constants import (
    BENCHMARK_METRICS,
    CLASSIFIER_METRICS,
    COVERAGE_METRICS,
    DATA_METRICS,
    DEPLOYED_MODEL,
    DISTILL_METRICS,
    EVALUATE_METRICS,
    ONNX_METRICS,
    PLOTS_DIR,
    QUANTIZE_METRICS,
    README,
    RESULTS_PAGE,
    SERVICES_START_METRICS,
    SERVING_METRICS,
    TRAIN_METRICS,
    TRT_METRICS,
)
from pair_classifier.errors import PairClassifierError
from pair_classifier.io_utils import read_json, replacing_file, write_json
from pair_classifier.results_serving import services_section, serving_headline, serving_section
from pair_classifier.results_tables import (
    MISSING,
    classifier_section,
    code,
    data_section,
    distill_section,
    evaluate_section,
    number,
    plain,
    scalar_table,
    table,
    times,
)
from pair_classifier.results_variants import (
    ONNX_TEACHER,
    PYTORCH_TEACHER,
    benchmark_section,
    machine_section,
    matmul_section,
    quantize_section,
    records_table,
    served_section,
    served_variant,
    trt_section,
)

logger = logging.getLogger(__name__)

METRIC_FILES = {
    "data": DATA_METRICS,
    "train": TRAIN_METRICS,
    "classifier": CLASSIFIER_METRICS,
    "evaluate": EVALUATE_METRICS,
    "distill": DISTILL_METRICS,
    "onnx": ONNX_METRICS,
    "quantize": QUANTIZE_METRICS,
    "trt": TRT_METRICS,
    "benchmark": BENCHMARK_METRICS,
    "serving": SERVING_METRICS,
    "services_start": SERVICES_START_METRICS,
    "coverage": COVERAGE_METRICS,
}
README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"
COVERAGE_KEYS = ("percent_covered", "covered_lines", "num_statements")
COVERAGE_DECIMALS = 2
FLAGS_KEY_PART = "flags"  # the machine record's CPU flags, whatever the benchmark names the key
# The flags the README's headline names (the results page lists them all): whether int8 and
# bf16 products have hardware of their own, which decides how far quantisation speeds things up.
HEADLINE_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
PLOT_SUFFIX = ".png"
REGENERATE = "pair-classifier results"


def load_metrics(root: Path) -> dict[str, dict]:
    """Each committed metrics file by stage name; a file that is absent gives ``{}``."""
    metrics = {}
    for name, relative in METRIC_FILES.items():
        path = root / relative
        record = read_json(path) if path.is_file() else {}
        if not isinstance(record, Mapping):
            raise PairClassifierError(
                f"{path}: expected a JSON object, found {type(record).__name__}"
            )
        metrics[name] = dict(record)
    return metrics


def coverage_totals(report: Path) -> dict[str, Any]:
    """The ``totals`` figures of a coverage.py JSON report that metrics/coverage.json keeps."""
    data = read_json(report)
    totals = data.get("totals") if isinstance(data, Mapping) else None
    missing = [key for key in COVERAGE_KEYS if not isinstance(totals, Mapping) or key not in totals]
    if missing:
        raise PairClassifierError(
            f"{report}: not a coverage.py JSON report: totals lacks {', '.join(missing)} "
            "(write one with pytest --cov --cov-report=json)"
        )
    return {
        "percent_covered": round(float(totals["percent_covered"]), COVERAGE_DECIMALS),
        "covered_lines": int(totals["covered_lines"]),
        "num_statements": int(totals["num_statements"]),
    }


def plot_links(root: Path) -> list[str]:
    """Every PNG under plots/, linked relative to docs/ (where the page lives), sorted."""
    plots = sorted((root / PLOTS_DIR).rglob(f"*{PLOT_SUFFIX}"))
    relative = [plot.relative_to(root) for plot in plots]
    up = "../" * (len(RESULTS_PAGE.parts) - 1)
    return [
        f"- [{path.relative_to(PLOTS_DIR).as_posix()}]({up}{path.as_posix()})" for path in relative
    ]


def coverage_line(coverage: Mapping[str, Any]) -> str:
    if not coverage:
        return f"Coverage not recorded ({COVERAGE_METRICS} is absent)."
    return (
        f"Line coverage of the test suite: {number(coverage.get('percent_covered'), '.2f')} % "
        f"({plain(coverage.get('covered_lines'))} of {plain(coverage.get('num_statements'))} "
        "statements)."
    )


def render_page(metrics: Mapping[str, dict], plots: list[str]) -> str:
    """The whole of docs/results.md."""
    lines = [
        "# Results of the default run",
        "",
        f"Generated by `{REGENERATE}` (the DVC stage `results`) from `metrics/*.json` and "
        "`plots/`: do not edit by hand. Rerun a stage, then this, and commit both.",
        "",
        "## Machine",
        "",
        *machine_section(metrics["benchmark"]),
        "## Data",
        "",
        *data_section(metrics["data"]),
        "",
        "## Teacher",
        "",
        "Fine-tuning (`metrics/train.json`):",
        "",
        *scalar_table(metrics["train"]),
        "",
        *classifier_section(metrics["classifier"], "Teacher classifier"),
        *evaluate_section(metrics["evaluate"]),
        "## Student",
        "",
        *distill_section(metrics["distill"]),
        "## Exported variants",
        "",
        "ONNX graphs against PyTorch (`metrics/onnx.json`):",
        "",
        *records_table(metrics["onnx"], "graph"),
        "",
        *quantize_section(metrics["quantize"], served_variant(metrics["benchmark"])),
        *trt_section(metrics["trt"]),
        "## Benchmark",
        "",
        *benchmark_section(metrics["benchmark"]),
        *matmul_section(metrics["benchmark"]),
        "## Served graph",
        "",
        *served_section(metrics["benchmark"]),
        "## Serving",
        "",
        *serving_section(metrics["serving"]),
        "## Team services",
        "",
        *services_section(metrics["services_start"]),
        "## Plots",
        "",
        *(plots or ["No plots found."]),
        "",
        "## Tests",
        "",
        coverage_line(metrics["coverage"]),
    ]
    return "\n".join(lines) + "\n"


def _cpu_flags(benchmark: Mapping[str, Any]) -> str:
    machine = benchmark.get("machine")
    if not isinstance(machine, Mapping):
        return "not recorded"
    flags = [value for key, value in sorted(machine.items()) if FLAGS_KEY_PART in key]
    if not flags:
        return "not recorded"
    if not isinstance(flags[0], list):
        return plain(flags[0])
    named = [flag for flag in HEADLINE_FLAGS if flag in flags[0]]
    return ", ".join(named) if named else "none of " + ", ".join(HEADLINE_FLAGS)


def render_headline(metrics: Mapping[str, dict]) -> str:
    """The README's short table: the default run's figures a newcomer asks for first."""
    evaluate, benchmark = metrics["evaluate"], metrics["benchmark"]
    variants = benchmark.get("variants", {})
    kept = benchmark.get("f1_relative_to_teacher", {})
    vs_pytorch = benchmark.get(f"speedup_vs_{PYTORCH_TEACHER}", {})
    vs_onnx = benchmark.get(f"speedup_vs_{ONNX_TEACHER}", {})
    student = f"pytorch_fp32_{DEPLOYED_MODEL}"
    serving = served_variant(benchmark)
    served = f"onnx_{serving}_{DEPLOYED_MODEL}" if serving else None
    pick = benchmark.get("fastest_keeping_f1")
    rows = [
        [
            "teacher test accuracy / F1",
            f"{number(evaluate.get('accuracy'), '.4f')} / " f"{number(evaluate.get('f1'), '.4f')}",
        ],
        [
            "student test F1 (share of the teacher's)",
            f"{number(variants.get(student, {}).get('f1'), '.4f')} "
            f"({number(kept.get(student), '.2%')})",
        ],
        ["served variant", code(served) if served else "not recorded"],
        [
            "served: speed-up vs PyTorch / ORT teacher",
            f"{times(vs_pytorch.get(served))} / {times(vs_onnx.get(served))}",
        ],
        ["served: share of the teacher's F1", number(kept.get(served), ".2%")],
        [
            "fastest keeping the F1 bar",
            f"{code(pick) if pick else MISSING}: {times(vs_pytorch.get(pick))} / "
            f"{times(vs_onnx.get(pick))}",
        ],
        serving_headline(metrics["serving"]),
        ["benchmark machine's CPU flags", _cpu_flags(benchmark)],
        [
            "line coverage of the tests",
            (
                f"{number(metrics['coverage'].get('percent_covered'), '.2f')} %"
                if metrics["coverage"]
                else "not recorded"
            ),
        ],
    ]
    return "\n".join(table(["default run (generated)", "figure"], rows)) + "\n"


def with_headline(readme: str, headline: str, where: Path) -> str:
    """``readme`` with the text between the result markers replaced by ``headline``."""
    start, end = readme.find(README_START), readme.find(README_END)
    if start < 0 or end < start:
        raise PairClassifierError(f"{where}: needs a {README_START} line followed by {README_END}")
    return f"{readme[: start + len(README_START)]}\n\n{headline}\n{readme[end:]}"


def expected_files(root: Path, coverage_report: Path | None = None) -> dict[Path, str]:
    """What docs/results.md and README.md should hold given the metrics (and a coverage report)."""
    metrics = load_metrics(root)
    if coverage_report is not None:
        metrics["coverage"] = coverage_totals(coverage_report)
    readme = (root / README).read_text(encoding="utf-8")
    return {
        RESULTS_PAGE: render_page(metrics, plot_links(root)),
        README: with_headline(readme, render_headline(metrics), root / README),
    }


def stale_files(root: Path, coverage_report: Path | None = None) -> list[Path]:
    """The generated files whose committed text differs from what the metrics give."""
    return [
        relative
        for relative, text in expected_files(root, coverage_report).items()
        if not (root / relative).is_file() or (root / relative).read_text(encoding="utf-8") != text
    ]


def write_results(root: Path, coverage_report: Path | None = None) -> list[Path]:
    """Refresh metrics/coverage.json from ``coverage_report`` if given, then write the pages."""
    if coverage_report is not None:
        write_json(root / COVERAGE_METRICS, coverage_totals(coverage_report))
    written = []
    for relative, text in expected_files(root).items():
        with replacing_file(root / relative) as staging:
            staging.write_text(text, encoding="utf-8")
        written.append(relative)
    logger.debug("results written: %s", written)
    return written
