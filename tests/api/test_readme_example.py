"""The README's Python API example runs as written against a finished run (a tiny one, made here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import mie

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    """The first ```python block of the README's "Python API" section."""
    section = README.read_text(encoding="utf-8").split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README.md: the Python API section has no ```python block"
    return match.group(1)


def test_the_example_is_short_and_loads_the_demo_run():
    code = readme_example()
    assert len(code.strip().splitlines()) <= 10
    assert 'mie.load_run("runs/demo")' in code and "probs=True" in code


def test_the_example_prints_the_probabilities_of_three_captions(tiny_run, tmp_path):
    root = tiny_run.parents[1]  # holds runs/demo and data/shapes, the paths the example names
    script = tmp_path / "example.py"
    script.write_text(readme_example(), encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = re.findall(r"^\s*([\d.]+)%\s+(.+)$", done.stdout, re.M)
    captions = ["a red circle", "a blue square", "a green triangle"]
    assert [caption for _, caption in lines] == captions
    run = mie.load_run(tiny_run)
    expected = run.similarity([root / "data/shapes/images/test/test_00000.png"], captions, probs=True)[0]
    assert [float(p) for p, _ in lines] == pytest.approx([100 * p for p in expected.tolist()], abs=0.051)
    assert "SearchHit(path=" in done.stdout
