"""Benchmark summary: speed-ups and the fastest variant that keeps 99 % of the teacher's F1."""

from __future__ import annotations

import dataclasses
import importlib
import logging
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import psutil
import pytest
from helpers import composed, pairs_frame

from pair_classifier.benchmark import run as benchmark_run
from pair_classifier.benchmark.measure import BATCH_INVARIANCE, Variant, measure
from pair_classifier.benchmark.report import fastest_keeping_f1, relative_to
from pair_classifier.benchmark.run import (
    ONNX_TEACHER,
    PYTORCH_TEACHER,
    pipeline_variants,
    rejected_variants,
    run_benchmark,
)
from pair_classifier.benchmark.supervision import BenchmarkError, in_fresh_process
from pair_classifier.config import BenchmarkConfig, ConfigError, QuantizeConfig
from pair_classifier.constants import BI_ENCODER_SUBDIR, ENCODER_SUBDIR
from pair_classifier.export.quantization import quantize_dynamic_int8
from pair_classifier.export.runtime import session
from pair_classifier.export.tensorrt_engine import engine_name
from pair_classifier.io_utils import write_json
from pair_classifier.matmul_rates import (
    MATMUL_INPUT,
    MATMUL_NODE,
    matmul_rates,
    median_rates,
    multiply_accumulates_per_second,
    save_matmul_graph,
)


def _results(**variants: tuple[float, float]) -> dict[str, dict[str, float]]:
    return {
        name: {"throughput_pairs_per_s": speed, "f1": f1} for name, (speed, f1) in variants.items()
    }


def test_a_variant_just_under_99_percent_of_the_f1_does_not_count() -> None:
    results = _results(
        teacher=(84.4, 0.8552),
        fast=(388.3, 0.8459),  # 98.91 %: rounds to 0.99, must not pass
        slower=(343.9, 0.8468),  # 99.02 %
        slowest=(296.3, 0.8552),
    )
    assert fastest_keeping_f1(results, "teacher", 0.99) == "slower"
    assert relative_to(results, "teacher", "f1", 4)["fast"] == 0.9891
    assert relative_to(results, "teacher", "throughput_pairs_per_s", 2)["fast"] == 4.6


def test_no_variant_keeps_the_f1() -> None:
    results = _results(teacher=(80.0, 0.86), student=(400.0, 0.80))
    assert fastest_keeping_f1(results, "teacher", 0.99) is None
    assert fastest_keeping_f1(results, "teacher", kept=0.9) == "student"


def test_pipeline_variants_include_the_engines_the_trt_stage_built(tmp_path: Path) -> None:
    trt_dir = tmp_path / "trt"
    trt_dir.mkdir()
    (trt_dir / engine_name("student", "fp16")).write_bytes(b"")
    variants = pipeline_variants(*(tmp_path / name for name in ("t", "s", "onnx", "q")), trt_dir)
    names = [variant.name for variant in variants]
    assert names[:2] == [PYTORCH_TEACHER, "pytorch_fp32_student"] and ONNX_TEACHER in names
    assert names[-1] == "tensorrt_fp16_student"
    assert {variant.kind for variant in variants} == {"pytorch", "onnx", "tensorrt"}


def test_variants_the_quantize_stage_rejected_are_neither_measured_nor_picked(
    tmp_path: Path,
) -> None:
    """int8_dynamic outside the accuracy bound is left out of serving: the benchmark must not
    run it, let alone recommend it, however fast it was."""
    dirs = [tmp_path / name for name in ("t", "s", "onnx", "q", "trt")]
    quantize_metrics = tmp_path / "quantize.json"
    write_json(quantize_metrics, {"int8_static": {}, "rejected": {}})
    every = [
        variant.name for variant in pipeline_variants(*dirs, rejected_variants(quantize_metrics))
    ]
    assert "onnx_int8_dynamic_student" in every and "onnx_int8_static_student" in every
    reason = {"reason": "int8_dynamic: validation accuracy dropped by 0.05"}
    write_json(quantize_metrics, {"rejected": {"int8_dynamic": reason}})
    kept = [
        variant.name for variant in pipeline_variants(*dirs, rejected_variants(quantize_metrics))
    ]
    assert kept == [name for name in every if name != "onnx_int8_dynamic_student"]
    write_json(quantize_metrics, {})  # a quantize record older than rejections
    assert [v.name for v in pipeline_variants(*dirs, rejected_variants(quantize_metrics))] == every


def test_a_rejected_record_that_is_not_a_mapping_is_named(tmp_path: Path) -> None:
    quantize_metrics = tmp_path / "quantize.json"
    write_json(quantize_metrics, {"rejected": ["int8_dynamic"]})
    with pytest.raises(BenchmarkError, match=r"quantize\.json: 'rejected' must map .* found list"):
        rejected_variants(quantize_metrics)
    with pytest.raises(BenchmarkError, match=r"missing\.json: not found"):
        rejected_variants(tmp_path / "missing.json")


def test_each_variant_and_pass_logs_its_figure(
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Minutes of benchmark must not pass in silence: a line per throughput pass and latency
    pass (from the measuring process) and one per variant with its figures."""
    tokenizer_dir = tiny_model_dir / BI_ENCODER_SUBDIR / ENCODER_SUBDIR
    variant = Variant("pytorch_tiny", "pytorch", tiny_model_dir, tokenizer_dir)
    config = composed(
        "benchmark",
        BenchmarkConfig,
        batch_size=8,
        latency_pairs=4,
        warmup_batches=0,
        throughput_passes=2,
        threads=1,
    )
    pairs = pairs_frame(16, 3)
    with caplog.at_level(logging.INFO):
        result = measure(variant, pairs, ["different", "same"], 1, 32, config, seed=0)
    for line in (
        r"pytorch_tiny: throughput pass 1/2: [\d.]+ pairs/s",
        r"pytorch_tiny: throughput pass 2/2: [\d.]+ pairs/s",
        r"pytorch_tiny: latency pass over 4 single pairs: .*latency_p50_ms.*"
        r"max \|Δprobability\| vs batch 8: ",
    ):
        assert re.search(line, caplog.text), line
    assert 0 <= result[BATCH_INVARIANCE] < 1e-4  # fp32: padding changes nothing that matters

    def in_this_process(function: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return result if function is measure else {"gmac_per_s": {"onnx_fp32": 1.0}}

    monkeypatch.setattr(benchmark_run, "in_fresh_process", in_this_process)
    caplog.clear()
    card = {"class_names": ["different", "same"], "positive_label": "same", "max_length": 32}
    names = (PYTORCH_TEACHER, ONNX_TEACHER, "onnx_fp32_student")
    variants = [dataclasses.replace(variant, name=name) for name in names]
    with caplog.at_level(logging.INFO):
        report = run_benchmark(
            variants, pairs, card, config, 0, composed("quantize", QuantizeConfig), 17
        )
    for number, name in enumerate(names, start=1):
        assert f"measuring {name} ({number}/3)" in caplog.text
        assert re.search(rf"{name}: [\d.]+ pairs/s, latency p50 [\d.]+ ms, F1 ", caplog.text)
    assert report["served"]["variant"] == "fp32"  # the only student graph, invariant
    assert report["served"]["graph"] == str(tiny_model_dir)
    assert "Served graph: fp32: the fastest eligible graph" in caplog.text


def test_the_int8_product_is_quantised_as_the_quantize_stage_does_it(tmp_path: Path) -> None:
    weights = np.random.default_rng(0).standard_normal((32, 48), dtype=np.float32) * 0.05
    fp32, int8 = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    save_matmul_graph(weights, fp32, opset=17)
    quantize_dynamic_int8(fp32, int8, composed("quantize", QuantizeConfig), nodes=[MATMUL_NODE])
    ops = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert "MatMulInteger" in ops and "MatMul" not in ops
    x = np.random.default_rng(1).standard_normal((8, 32), dtype=np.float32)
    (product,) = session(int8, threads=1).run(None, {MATMUL_INPUT: x})
    assert np.abs(product - x @ weights).max() < 0.05  # int8-close to the float product


def test_an_empty_node_list_is_refused_not_read_as_every_node(tmp_path: Path) -> None:
    save_matmul_graph(np.ones((4, 4), dtype=np.float32), tmp_path / "fp32.onnx", opset=17)
    config = composed("quantize", QuantizeConfig)
    with pytest.raises(ValueError, match="empty list of nodes"):
        quantize_dynamic_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", config, [])
    assert not (tmp_path / "int8.onnx").exists()


def test_a_rate_is_multiply_accumulates_over_the_time_taken() -> None:
    pause = 0.05  # long enough that a loaded machine's oversleep stays well under the bound
    rate = multiply_accumulates_per_second(lambda: time.sleep(pause), 10**9, min_seconds=0.2)
    assert 0.5 / pause < rate <= 1 / pause  # 1 GMAC per pause (a sleep never ends early)


def test_every_product_takes_its_turn_in_each_pass() -> None:
    calls: list[str] = []
    products = {name: (lambda name=name: calls.append(name)) for name in ("slow", "fast")}
    report = median_rates(products, macs=10, passes=3, min_seconds=0.0)
    assert calls[-6:] == ["slow", "fast"] * 3  # after the warm-up, alternating
    assert set(report["gmac_per_s"]) == set(report["spread"]) == {"slow", "fast"}
    assert all(spread >= 0 for spread in report["spread"].values())


def test_matmul_rates_are_measured_for_each_runtime() -> None:
    report = matmul_rates(
        composed("quantize", QuantizeConfig),
        opset=17,
        threads=1,
        seed=0,
        passes=2,
        shape=(64, 32, 48),
        min_seconds=0.01,
    )
    assert set(report["gmac_per_s"]) == {"pytorch_fp32", "onnx_fp32", "onnx_int8_dynamic"}
    assert all(rate > 0 for rate in report["gmac_per_s"].values())


@pytest.mark.slow  # a child process
def test_a_fresh_process_is_let_finish_its_shutdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A variant's process that takes time to shut down (joining its thread pools, say) must not
    be killed before its exit handlers ran: they release its locks, which are otherwise reported
    as leaked semaphores, as tqdm's was after loading weights."""
    (tmp_path / "slow_exit.py").write_text(
        "import os, time\n"
        "from multiprocessing import util\n"
        "def work(marker):\n"
        "    util.Finalize(None, open, (marker, 'w'), exitpriority=0)\n"
        "    util.Finalize(None, time.sleep, (0.5,), exitpriority=10)  # runs first\n"
        "    return {'pid': os.getpid()}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    slow_exit = importlib.import_module("slow_exit")
    marker = tmp_path / "exit_handlers_ran"
    assert in_fresh_process(slow_exit.work, str(marker), timeout_s=60)["pid"] != os.getpid()
    assert marker.exists()


@pytest.fixture
def child_functions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Functions a spawned child can import: the test module's own path is not on its path."""
    (tmp_path / "child_functions.py").write_text(
        "import logging, os, time\n"
        "from multiprocessing import util\n"
        "def log(message):\n"
        "    logging.getLogger('pair_classifier.benchmark.child').info(message)\n"
        "    return {}\n"
        "def sleep(seconds):\n"
        "    time.sleep(seconds)\n"
        "    return {}\n"
        "def fail(message):\n"
        "    raise ValueError(message)\n"
        "def die(code):\n"
        "    os._exit(code)\n"
        "def answer_then_hang(seconds):\n"
        "    util.Finalize(None, time.sleep, (seconds,), exitpriority=10)\n"
        "    return {'pid': os.getpid()}\n"
        "def record_pid_then_sleep(pid_file, seconds):\n"
        "    open(pid_file, 'w').write(str(os.getpid()))\n"
        "    time.sleep(seconds)\n"
        "    return {}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module("child_functions")


@pytest.mark.slow  # a child process
def test_a_variant_s_progress_lines_reach_the_log(
    child_functions: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    """A spawned child starts with no logging set up: its pass lines would vanish. It logs as
    the stage does (the project's loggers at INFO, the root logger left at WARNING)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)
    try:
        in_fresh_process(child_functions.log, "pass 1/3: 250.0 pairs/s", timeout_s=60, name="v")
    finally:
        root.setLevel(level)
    assert re.search(
        r"INFO pair_classifier\.benchmark\.child: pass 1/3: 250\.0 pairs/s", capfd.readouterr().err
    )


@pytest.mark.slow  # a child process
def test_a_variant_that_does_not_answer_in_time_is_killed(child_functions: Any) -> None:
    started = time.perf_counter()
    with pytest.raises(BenchmarkError, match=r"onnx_int8: no answer within 1 s .*was killed"):
        in_fresh_process(child_functions.sleep, 600, timeout_s=1, name="onnx_int8")
    assert time.perf_counter() - started < 30  # not the 600 s the child would have slept
    assert multiprocessing.active_children() == []


@pytest.mark.slow  # a child process
def test_a_variant_s_exception_is_raised_with_the_child_s_traceback(child_functions: Any) -> None:
    with pytest.raises(ValueError, match="no such graph") as raised:
        in_fresh_process(child_functions.fail, "no such graph", timeout_s=60)
    assert "child process" in raised.value.__notes__[0]
    assert "raise ValueError(message)" in raised.value.__notes__[0]


@pytest.mark.slow  # a child process
def test_a_variant_whose_process_dies_is_reported_with_its_exit_code(
    child_functions: Any,
) -> None:
    with pytest.raises(BenchmarkError, match=r"die: its process died before answering .*code 3"):
        in_fresh_process(child_functions.die, 3, timeout_s=60)


@pytest.mark.slow  # a child process
def test_an_answer_stands_when_the_process_then_hangs_on_exit(child_functions: Any) -> None:
    with pytest.warns(RuntimeWarning, match="answer_then_hang: .* had not exited 1 s later"):
        answer = in_fresh_process(
            child_functions.answer_then_hang, 600, timeout_s=60, exit_grace_s=1
        )
    assert answer["pid"] != os.getpid()
    assert multiprocessing.active_children() == []


def test_the_variant_timeout_must_be_positive() -> None:
    with pytest.raises(ConfigError, match=r"benchmark.variant_timeout_s: need a positive"):
        composed("benchmark", BenchmarkConfig, variant_timeout_s=0)


def _gone(pid: int) -> bool:
    """Whether a process has exited (a zombie nobody has reaped yet counts as exited)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow  # a benchmark process and its child
@pytest.mark.parametrize("kill_signal", [signal.SIGTERM, signal.SIGKILL])
def test_a_variant_s_process_ends_when_the_benchmark_is_killed(
    child_functions: Any, tmp_path: Path, kill_signal: signal.Signals
) -> None:
    """Killed by a signal, the stage runs no exit handlers: its child must notice on its own."""
    pid_file = tmp_path / "child.pid"
    benchmark = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
            "import child_functions\n"
            "from pair_classifier.benchmark.supervision import in_fresh_process\n"
            "in_fresh_process(child_functions.record_pid_then_sleep, "
            f"{str(pid_file)!r}, 600, timeout_s=600)\n",
        ]
    )
    deadline = time.monotonic() + 120
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    child_pid = int(pid_file.read_text())
    benchmark.send_signal(kill_signal)
    assert benchmark.wait(timeout=30) == -kill_signal
    deadline = time.monotonic() + 30
    while not _gone(child_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    outlived = not _gone(child_pid)
    if outlived:  # do not leave it sleeping beside the rest of the suite
        psutil.Process(child_pid).kill()
    assert not outlived, f"the variant's process {child_pid} outlived the benchmark"


def test_machine_record_names_the_processor_and_its_speed_flags(tmp_path: Path) -> None:
    """The benchmark's record says which CPU produced its figures and which of the flags that
    decide int8 and bf16 speed it has; other flags are left out."""
    from pair_classifier.benchmark.machine import machine_record

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "".join(
            f"processor\t: {cpu}\nmodel name\t: Some CPU 9000\n"
            "flags\t\t: fpu sse2 avx2 avx512_vnni amx_int8\n"
            for cpu in range(2)
        )
    )
    record = machine_record(cpuinfo)
    assert record["processor"] == "Some CPU 9000"
    assert record["cpu_flags"] == ["amx_int8", "avx2", "avx512_vnni"]
    assert record["logical_cpus"] >= 1
