"""The CPU this process runs on, in words. Speed depends on it more than on anything else, and the
int8 answers a little too (PyTorch's int8 kernels take other paths on CPUs with VNNI or AMX; model
card, "The int8 figures depend a little on the CPU"), so the benchmarks and the evaluator name it."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# flag in /proc/cpuinfo -> name; the instruction sets that int8 matrix kernels choose between
INT8_INSTRUCTIONS = (
    ("avx2", "AVX2"),
    ("avx_vnni", "AVX-VNNI"),
    ("avx512_vnni", "AVX-512 VNNI"),
    ("amx_int8", "AMX"),
)


@dataclass(frozen=True)
class CpuInfo:
    """`model`: the CPU's name as the OS gives it; `cores`: the cores this process may use;
    `int8_instructions`: which of `INT8_INSTRUCTIONS` it has, in that order."""

    model: str
    cores: int
    int8_instructions: tuple[str, ...]

    def describe(self) -> str:
        """One line, e.g. "Intel(R) Xeon(R) Processor, 2 cores, int8: AVX2, AVX-512 VNNI"."""
        int8 = ", ".join(self.int8_instructions) or "none of " + ", ".join(n for _, n in INT8_INSTRUCTIONS)
        return f"{self.model}, {self.cores} core{'s' if self.cores != 1 else ''}, int8: {int8}"


def parse_cpuinfo(text: str, cores: int) -> CpuInfo:
    """The first processor of a /proc/cpuinfo `text`: its "model name" ("unknown CPU" without one)
    and the int8 instruction sets among its "flags"."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor's block is enough: they are alike
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    return CpuInfo(
        fields.get("model name") or "unknown CPU",
        cores,
        tuple(name for flag, name in INT8_INSTRUCTIONS if flag in flags),
    )


def cpu_info() -> CpuInfo:
    """This machine's CPU: from /proc/cpuinfo on Linux; elsewhere only its name and core count."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if CPUINFO.is_file():
        return parse_cpuinfo(CPUINFO.read_text(errors="replace"), cores)
    return CpuInfo(platform.processor() or platform.machine() or "unknown CPU", cores, ())
