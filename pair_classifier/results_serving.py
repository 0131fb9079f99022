"""The load test's part of docs/results.md and README.md's headline (metrics/serving.json):
each server's throughput and latency per client count, and the ratios the serving bars read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pair_classifier.results_tables import MISSING, code, number, plain, table, times

REFERENCE = "triton"  # the server the others are compared with
RATIO_PREFIX = f"{REFERENCE}_vs_"
AT_PREFIX = "at_"


def compared(serving: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """The client count the ratios were read at and the record of that comparison."""
    for key, value in serving.items():
        if key.startswith(AT_PREFIX) and isinstance(value, Mapping):
            return key.removeprefix(AT_PREFIX).split("_")[0], value
    return MISSING, {}


def serving_headline(serving: Mapping[str, Any]) -> list[str]:
    """The README row: Triton's throughput over each other server's and its p99."""
    clients, at = compared(serving)
    ratios = at.get("throughput_ratios") or {}
    vs = " / ".join(
        f"{times(value)} {name.removeprefix(RATIO_PREFIX)}" for name, value in ratios.items()
    )
    return [
        f"Triton at {clients} clients: throughput vs MLflow serving; p99",
        f"{vs or MISSING}; {number(at.get(f'{REFERENCE}_p99_ms'), '.0f')} ms",
    ]


def serving_section(serving: Mapping[str, Any]) -> list[str]:
    """docs/results.md's Serving section."""
    if not serving:
        return ["Not measured (`metrics/serving.json` is absent; `dvc repro load-test`).", ""]
    rows = [
        [
            code(target),
            plain(figures.get("clients")),
            number(figures.get("throughput_req_per_s"), ".1f"),
            number(figures.get("p50_ms"), ".0f"),
            number(figures.get("p95_ms"), ".0f"),
            number(figures.get("p99_ms"), ".0f"),
            f"{plain(figures.get('failures'))} of {plain(figures.get('requests'))}",
        ]
        for target, points in (serving.get("targets") or {}).items()
        for figures in points.values()
    ]
    clients, at = compared(serving)
    soak = serving.get("soak") or {}
    machine = serving.get("machine") or {}
    return [
        f"Load test (`metrics/serving.json`, stage `load-test`): {plain(serving.get('pairs'))} "
        f"{plain(serving.get('split'))} pairs, one per request, "
        f"{plain(serving.get('point_duration_s'))} s per point; "
        f"model {code(str(serving.get('model')))}; "
        f"clients on the same {plain(machine.get('logical_cpus'))} CPUs "
        f"({plain(machine.get('cpu_flags'))}).",
        "",
        *table(["server", "clients", "requests/s", "p50 ms", "p95 ms", "p99 ms", "failed"], rows),
        "",
        f"At {clients} clients, Triton's throughput over the others': "
        + (
            ", ".join(
                f"{name.removeprefix(RATIO_PREFIX)} {times(value)}"
                for name, value in (at.get("throughput_ratios") or {}).items()
            )
            or MISSING
        )
        + f"; Triton's p99 {number(at.get(f'{REFERENCE}_p99_ms'), '.0f')} ms.",
        "",
        (
            f"Soak: {code(str(soak.get('target')))} at {plain(soak.get('clients'))} clients for "
            f"{plain(soak.get('duration_s'))} s: {plain(soak.get('failures'))} failed of "
            f"{plain(soak.get('requests'))} ({number(soak.get('throughput_req_per_s'), '.1f')} "
            "requests/s)."
            if soak
            else "No soak recorded."
        ),
        "",
    ]


def services_section(start: Mapping[str, Any]) -> list[str]:
    """docs/results.md's Team services section: how long `services up` takes."""
    if not start:
        return [
            "Not measured (`metrics/services_start.json` is absent; "
            "`python -m pair_classifier.services_start`).",
            "",
        ]
    median = start.get("median") or {}
    machine = start.get("machine") or {}
    return [
        f"`pair-classifier services up` (`metrics/services_start.json`), median of "
        f"{len(start.get('rounds') or [])} rounds: from cold (new data folder, `initdb` "
        f"included) {number(median.get('cold_s'), '.1f')} s, warm (after `down`) "
        f"{number(median.get('warm_s'), '.1f')} s, again while running "
        f"{number(median.get('again_s'), '.1f')} s; MLflow with "
        f"{plain(start.get('mlflow_workers'))} worker(s), load average "
        f"{plain(start.get('load_average_1m_before'))} before, "
        f"{plain(machine.get('logical_cpus'))} CPUs ({plain(machine.get('cpu_flags'))}).",
        "",
    ]
