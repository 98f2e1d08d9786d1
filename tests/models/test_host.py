from pathlib import Path

import pytest

from models import host
from models.host import CpuInfo, cpu_info, parse_cpuinfo

XEON = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx_vnni amx_bf16 amx_int8

processor\t: 1
model name\t: Another CPU
flags\t\t: fpu
"""
EPYC = """processor\t: 0
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse2 avx avx2 fma
"""


def test_parse_cpuinfo_names_the_first_processor_and_its_int8_instructions() -> None:
    info = parse_cpuinfo(XEON, cores=2)
    assert info == CpuInfo("Intel(R) Xeon(R) Processor", 2, ("AVX2", "AVX-VNNI", "AVX-512 VNNI", "AMX"))
    assert info.describe() == "Intel(R) Xeon(R) Processor, 2 cores, int8: AVX2, AVX-VNNI, AVX-512 VNNI, AMX"


def test_parse_cpuinfo_without_vnni_has_avx2_only() -> None:
    assert parse_cpuinfo(EPYC, cores=2).int8_instructions == ("AVX2",)


def test_parse_cpuinfo_without_a_model_name_or_flags_says_so() -> None:
    info = parse_cpuinfo("processor\t: 0\n", cores=1)
    assert info.model == "unknown CPU"
    assert info.describe() == "unknown CPU, 1 core, int8: none of AVX2, AVX-VNNI, AVX-512 VNNI, AMX"


def test_cpu_info_reads_the_cpuinfo_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cpuinfo").write_text(EPYC)
    monkeypatch.setattr(host, "CPUINFO", tmp_path / "cpuinfo")
    info = cpu_info()
    assert info.model == "AMD EPYC 7B12"
    assert info.cores >= 1


def test_cpu_info_without_the_file_still_names_a_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host, "CPUINFO", tmp_path / "absent")
    info = cpu_info()
    assert info.model and info.int8_instructions == ()
