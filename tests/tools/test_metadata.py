"""`mie metadata`: ast-only description of a source tree, robust to bad files, in JSON and Markdown."""

import json
import textwrap

import pytest

from mie.cli import main
from mie.tools import metadata

SHAPES = '''\
"""Shapes for tests.

More text.
"""

import os
from typing import Any as A
from . import sibling
from ..pkg.base import Base, Other


# a comment line
class Square(Base, metaclass=Meta):
    """A square."""

    side = 2  # not a comment line

    def __init__(self, side, /, scale=1.0, *rest, flag: bool = False, **extra) -> None:
        """Make one."""
        import math

    async def area(self):
        return self.side**2


def free(a, b=2):
    """Add."""
    return a + b


async def later(*, key):
    pass
'''


@pytest.fixture
def tree(tmp_path):
    """A small package with a good module, a syntax error, a module that exits, and folders to skip."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""The package."""\n')
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "shapes.py").write_text(SHAPES)
    (pkg / "broken.py").write_text("def ok():\n    pass\n\ndef bad(:\n    pass\n")
    marker = tmp_path / "executed.txt"
    (pkg / "exits.py").write_text(
        f'"""Exits on import."""\nopen({str(marker)!r}, "w").write("ran")\nraise SystemExit(3)\n'
    )
    (pkg / "latin1.py").write_bytes(b"x = '\xe9'\n")
    for skipped in (".hidden", "__pycache__", ".venv/lib"):
        (pkg / skipped).mkdir(parents=True)
        (pkg / skipped / "skip_me.py").write_text("x = 1\n")
    return pkg, marker


def _by_module(report):
    return {m["module"]: m for m in report["modules"]}


def test_walk_skips_hidden_cache_and_env_folders(tree):
    pkg, _ = tree
    names = [p.relative_to(pkg).as_posix() for p in metadata.python_files(pkg)]
    assert names == ["__init__.py", "broken.py", "exits.py", "latin1.py", "sub/__init__.py", "sub/shapes.py"]


def test_module_classes_functions_and_imports(tree):
    pkg, _ = tree
    report = metadata.collect(pkg)
    shapes = _by_module(report)["pkg.sub.shapes"]
    assert shapes["path"] == "sub/shapes.py" and shapes["error"] is None
    assert shapes["docstring"] == "Shapes for tests.\n\nMore text."
    [square] = shapes["classes"]
    assert square["name"] == "Square" and square["line"] == 13 and square["docstring"] == "A square."
    assert square["bases"] == ["Base"]  # keywords such as metaclass are not bases
    init, area = square["methods"]
    assert init["args"] == ["self", "side", "scale", "*rest", "flag", "**extra"]
    assert (init["line"], init["docstring"], init["returns"], init["async"]) == (18, "Make one.", "None", False)
    assert area["async"] is True and area["docstring"] is None
    free, later = shapes["functions"]
    assert (free["name"], free["args"], free["docstring"], free["line"]) == ("free", ["a", "b"], "Add.", 26)
    assert later["args"] == ["key"] and later["async"] is True
    assert shapes["imports"] == ["..pkg.base.Base", "..pkg.base.Other", ".sibling", "math", "os", "typing.Any"]


def test_line_counts_match_a_naive_count(tree):
    pkg, _ = tree
    shapes = _by_module(metadata.collect(pkg))["pkg.sub.shapes"]
    lines = SHAPES.split("\n")[:-1]
    blank = len([x for x in lines if x.strip() == ""])
    comment = len([x for x in lines if x.lstrip()[:1] == "#"])
    assert shapes["lines"] == {"total": len(lines), "blank": blank, "comment": comment,
                               "code": len(lines) - blank - comment}
    assert comment == 1


def test_bad_files_are_reported_and_the_walk_goes_on(tree):
    pkg, marker = tree
    report = metadata.collect(pkg)
    mods = _by_module(report)
    assert mods["pkg.broken"]["error"].startswith("SyntaxError: ") and "(line 4)" in mods["pkg.broken"]["error"]
    assert mods["pkg.broken"]["lines"]["total"] == 5 and mods["pkg.broken"]["functions"] == []
    assert mods["pkg.latin1"]["error"].startswith("UnicodeDecodeError")
    # a module whose top level exits is described, never executed
    assert mods["pkg.exits"]["error"] is None and mods["pkg.exits"]["docstring"] == "Exits on import."
    assert not marker.exists()
    assert report["summary"]["files"] == 6 and report["summary"]["errors"] == 2
    assert report["summary"]["classes"] == 1 and report["summary"]["functions"] == 2
    assert report["summary"]["methods"] == 2
    assert report["summary"]["lines"]["total"] == sum(m["lines"]["total"] for m in report["modules"])


def test_single_file_and_module_names(tmp_path):
    loose = tmp_path / "script.py"
    loose.write_text("def main():\n    pass\n")
    report = metadata.collect(loose)
    assert [m["module"] for m in report["modules"]] == ["script"]
    assert report["modules"][0]["path"] == "script.py"
    assert metadata.module_name(loose) == "script"


def test_missing_path_raises():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        metadata.collect("/no/such/place")


def test_cli_json_on_a_tree(tree, capsys):
    pkg, marker = tree
    assert main(["metadata", str(pkg)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {m["module"] for m in report["modules"]} == {
        "pkg", "pkg.broken", "pkg.exits", "pkg.latin1", "pkg.sub", "pkg.sub.shapes"}
    assert not marker.exists()


def test_cli_output_file_and_markdown(tree, tmp_path, capsys):
    pkg, _ = tree
    out = tmp_path / "reports" / "meta.md"
    assert main(["-q", "metadata", str(pkg), "--format", "markdown", "--output", str(out)]) == 0
    assert capsys.readouterr().out == ""  # written to the file, not stdout
    text = out.read_text()
    assert text.startswith(f"# Code metadata: `{pkg}`")
    assert "| 6 | 2 | 1 | 2 | 2 |" in text
    assert "## `pkg.sub.shapes` (sub/shapes.py)" in text
    assert "### class `Square(Base)` (line 13)" in text
    assert "- `__init__(self, side, scale, *rest, flag, **extra)` (line 18) Make one." in text
    assert "- `free(a, b)` (line 26) Add." in text
    assert "**Could not parse:** SyntaxError" in text


def test_cli_json_output_file(tree, tmp_path):
    pkg, _ = tree
    out = tmp_path / "meta.json"
    assert main(["metadata", str(pkg / "sub"), "-o", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [m["module"] for m in report["modules"]] == ["pkg.sub", "pkg.sub.shapes"]


def test_default_path_is_the_mie_package(capsys):
    assert main(["metadata"]) == 0
    modules = {m["module"] for m in json.loads(capsys.readouterr().out)["modules"]}
    assert {"mie", "mie.cli", "mie.config", "mie.tools.metadata"} <= modules


def test_markdown_of_an_empty_report():
    report = {"root": "x", "summary": {"files": 0, "errors": 0, "classes": 0, "functions": 0, "methods": 0,
                                       "lines": dict.fromkeys(("total", "code", "blank", "comment"), 0)},
              "modules": []}
    assert metadata.to_markdown(report) == textwrap.dedent("""\
        # Code metadata: `x`

        | files | errors | classes | functions | methods | lines | code | blank | comment |
        | --- | --- | --- | --- | --- | --- | --- | --- | --- |
        | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 0 |
        """)
