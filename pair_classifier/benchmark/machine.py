"""What machine the benchmark ran on, recorded beside its figures: a speed is only read against
the CPU that produced it (int8 products run several times faster with VNNI or AMX)."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import Any

CPUINFO = Path("/proc/cpuinfo")
# The instruction-set extensions that decide how fast fp32, bf16 and int8 products run.
SPEED_FLAGS = re.compile(r"^(avx2|avx512\w*|avx_vnni\w*|amx\w*|fma|f16c)$")


def _cpuinfo_field(text: str, name: str) -> str | None:
    """The first value of ``name`` in /proc/cpuinfo's text, or None."""
    match = re.search(rf"^{re.escape(name)}\s*:\s*(.*)$", text, flags=re.MULTILINE)
    return match.group(1).strip() if match else None


def machine_record(cpuinfo: Path = CPUINFO) -> dict[str, Any]:
    """Processor name, the speed-relevant CPU flags, logical CPUs, OS and Python."""
    text = cpuinfo.read_text(errors="replace") if cpuinfo.is_file() else ""
    flags = (_cpuinfo_field(text, "flags") or "").split()
    return {
        "processor": _cpuinfo_field(text, "model name") or platform.processor() or "unknown",
        "cpu_flags": sorted({flag for flag in flags if SPEED_FLAGS.match(flag)}),
        "logical_cpus": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
