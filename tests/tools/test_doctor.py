"""`mie doctor`: CPU flags, memory, disk, package versions, torch facts and the two output forms."""

import argparse
import json
import os
import shutil
import types
from importlib import metadata

import torch

from mie.tools import doctor

X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_bf16 amx_tile amx_bf16 amx_int8
processor\t: 1
model name\t: ignored second core
flags\t\t: fpu
"""
ARM_CPUINFO = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


def test_cpu_flags_from_x86_cpuinfo():
    info = doctor.cpu_info(X86_CPUINFO)
    assert info["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert info["isa_flags"] == ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile",
                                 "amx_bf16", "amx_int8"]
    assert info["logical_cores"] == os.cpu_count()
    assert 1 <= info["usable_cores"] <= os.cpu_count()


def test_cpu_flags_from_arm_features_and_fallback_model():
    info = doctor.cpu_info(ARM_CPUINFO)
    assert info["isa_flags"] == ["asimd", "sve", "bf16", "i8mm"]
    assert info["model"]  # no model line: platform.processor()/machine() fills in
    assert doctor.cpu_info("")["isa_flags"] == []


def test_memory_from_meminfo_text():
    text = "MemTotal:       16384000 kB\nMemFree:  1000 kB\nMemAvailable:    8192000 kB\n"
    mem = doctor.memory_info(text)
    assert mem["available_gib"] == round(8192000 * 1024 / 1024**3, 2)
    page_total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    assert mem["total_gib"] == round(page_total, 2)  # sysconf wins for the total where it exists


def test_disk_matches_shutil(tmp_path):
    disk = doctor.disk_info(tmp_path)
    usage = shutil.disk_usage(tmp_path)
    assert disk["total_gib"] == round(usage.total / 1024**3, 2)
    assert 0 <= disk["free_gib"] <= disk["total_gib"]


def test_package_versions():
    versions = doctor.package_versions()
    assert versions["torch"] == metadata.version("torch")
    assert set(versions) == set(doctor.PACKAGES)


def test_torch_facts_and_cpu_sdpa_probe():
    info = doctor.torch_info()
    assert info["version"] == torch.__version__
    assert info["threads"] == torch.get_num_threads()
    assert info["cuda_available"] == torch.cuda.is_available()
    assert info["sdpa"]["cpu"]["math"] is True  # the reference kernel always runs on CPU
    assert set(info["sdpa"]["cpu"]) == {"flash", "mem_efficient", "math", "cudnn"}
    assert info["sdpa"]["cpu"]["cudnn"] is False  # cuDNN attention is GPU-only


def test_runs_reports_runtime_errors_as_false():
    def refuse():
        raise RuntimeError("no kernel")

    assert doctor._runs(lambda: None) is True
    assert doctor._runs(refuse) is False


def test_json_and_table_output(capsys, tmp_path):
    assert doctor.run(argparse.Namespace(json=True, disk_path=str(tmp_path))) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["disk"]["path"] == str(tmp_path.resolve())
    assert set(report) == {"mie", "python", "os", "packages", "optional", "cpu", "memory", "disk", "torch"}
    assert isinstance(report["cpu"]["bf16_native"], bool)

    assert doctor.run(argparse.Namespace(json=False, disk_path=str(tmp_path))) == 0
    out = capsys.readouterr().out
    for text in ("python", "packages", "torch", "sdpa usable (cpu)", torch.__version__):
        assert text in out


def test_cuda_section_with_a_faked_device(monkeypatch, capsys):
    """No GPU in CI: fake torch.cuda's answers to check the CUDA branch's fields and its table rows."""
    props = types.SimpleNamespace(name="Fake H100", total_memory=80 * 1024**3, major=9, minor=0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    real_probe = doctor._sdpa_probe
    probed = []

    def probe(torch_module, device):
        probed.append(device)
        if device == "cuda":
            return {"flash": True, "mem_efficient": True, "math": True, "cudnn": False}
        return real_probe(torch_module, device)

    monkeypatch.setattr(doctor, "_sdpa_probe", probe)
    info = doctor.torch_info()
    assert probed == ["cpu", "cuda"]
    assert info["cuda_devices"] == [{"index": 0, "name": "Fake H100", "memory_gib": 80.0, "capability": "9.0"}]
    assert info["cuda_bf16"] is True
    assert info["sdpa_enabled"]["math"] == torch.backends.cuda.math_sdp_enabled()
    doctor.render({"torch": info})
    out = capsys.readouterr().out
    assert "Fake H100, 80.0 GiB, sm 9.0" in out
    assert "flash, mem_efficient, math" in out
