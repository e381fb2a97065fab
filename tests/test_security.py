"""The project's own security scan: no code path that runs untrusted bytes as code.

An ``ast`` walk over src/, tests/ and benchmarks/ forbids pickle-family modules, exec/eval/compile/
__import__, os.system/os.popen, ``shell=True``, ``torch.load`` without ``weights_only=True``,
``yaml.load`` without a safe loader and ``allow_pickle=True``. Each rule is also shown to fire on a
snippet, so the scan can fail.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("src", "tests", "benchmarks")
PICKLE_FAMILY = {"pickle", "cPickle", "_pickle", "marshal", "dill", "shelve", "cloudpickle", "joblib"}
CODE_RUNNERS = {"exec", "eval", "compile", "__import__"}
SHELL_CALLS = {"os.system", "os.popen"}
SAFE_LOADERS = {"SafeLoader", "CSafeLoader"}
YAML_UNSAFE = {"yaml.load_all", "yaml.unsafe_load", "yaml.unsafe_load_all", "yaml.full_load"}


def dotted(node: ast.AST) -> str:
    """``a.b.c`` for a Name/Attribute chain, '' for anything else (calls, subscripts)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((kw.value for kw in call.keywords if kw.arg == name), None)


def is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def call_findings(call: ast.Call) -> list[str]:
    """What is unsafe about one call."""
    name = dotted(call.func)
    found = []
    if name in CODE_RUNNERS or name in {f"builtins.{n}" for n in CODE_RUNNERS}:
        found.append(f"calls {name}()")
    if name in SHELL_CALLS:
        found.append(f"calls {name}()")
    if is_true(keyword(call, "shell")):
        found.append(f"{name or 'a call'}(..., shell=True)")
    if name == "torch.load" or name.endswith(".torch.load"):
        if not is_true(keyword(call, "weights_only")):
            found.append("torch.load without weights_only=True")
    if name in YAML_UNSAFE:
        found.append(f"{name}() (use yaml.safe_load)")
    if name == "yaml.load":
        loader = keyword(call, "Loader") or (call.args[1] if len(call.args) > 1 else None)
        if loader is None or dotted(loader).rsplit(".", 1)[-1] not in SAFE_LOADERS:
            found.append("yaml.load without a SafeLoader (use yaml.safe_load)")
    if is_true(keyword(call, "allow_pickle")):
        found.append(f"{name or 'a call'}(..., allow_pickle=True)")
    return found


def scan_source(text: str, filename: str = "<snippet>") -> list[str]:
    """Findings for one source text as ``file:line: what``; a file that does not parse is a finding."""
    try:
        tree = ast.parse(text, filename=filename)
    except SyntaxError as exc:
        return [f"{filename}: does not parse ({exc.msg})"]
    findings = []
    for node in ast.walk(tree):
        found: list[str] = []
        if isinstance(node, ast.Import):
            found = [f"imports {a.name}" for a in node.names if a.name.split(".")[0] in PICKLE_FAMILY]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLE_FAMILY:
            found = [f"imports from {node.module}"]
        elif isinstance(node, ast.Call):
            found = call_findings(node)
        findings += [f"{filename}:{node.lineno}: {what}" for what in found]
    return findings


def project_files() -> list[Path]:
    return sorted(p for d in SCANNED if (ROOT / d).is_dir() for p in (ROOT / d).rglob("*.py")
                  if "__pycache__" not in p.parts)


def test_project_has_no_unsafe_code():
    files = project_files()
    assert ROOT / "src" / "mie" / "cli" / "__init__.py" in files  # the walk really reaches src/
    findings = [f for p in files for f in scan_source(p.read_text(encoding="utf-8"), str(p.relative_to(ROOT)))]
    assert findings == [], "unsafe code:\n" + "\n".join(findings)


@pytest.mark.parametrize(
    "snippet, expected",
    [
        ("import pickle", "imports pickle"),
        ("import cloudpickle as cp", "imports cloudpickle"),
        ("from marshal import loads", "imports from marshal"),
        ("import dill", "imports dill"),
        ("import shelve", "imports shelve"),
        ("from joblib import load", "imports from joblib"),
        ("import _pickle", "imports _pickle"),
        ("exec('x = 1')", "calls exec()"),
        ("eval('1 + 1')", "calls eval()"),
        ("compile('1', 'f', 'eval')", "calls compile()"),
        ("__import__('os')", "calls __import__()"),
        ("import builtins\nbuiltins.eval('1')", "calls builtins.eval()"),
        ("import os\nos.system('ls')", "calls os.system()"),
        ("import os\nos.popen('ls')", "calls os.popen()"),
        ("import subprocess\nsubprocess.run('ls', shell=True)", "subprocess.run(..., shell=True)"),
        ("import torch\ntorch.load('m.pt')", "torch.load without weights_only=True"),
        ("import torch\ntorch.load('m.pt', weights_only=False)", "torch.load without weights_only=True"),
        ("import yaml\nyaml.load(open('c'))", "yaml.load without a SafeLoader (use yaml.safe_load)"),
        ("import yaml\nyaml.load(open('c'), Loader=yaml.FullLoader)", "yaml.load without a SafeLoader (use yaml.safe_load)"),
        ("import yaml\nyaml.load(s, Loader=NotASafeLoader)", "yaml.load without a SafeLoader (use yaml.safe_load)"),
        ("import yaml\nyaml.unsafe_load('a: 1')", "yaml.unsafe_load() (use yaml.safe_load)"),
        ("import numpy as np\nnp.load('a.npy', allow_pickle=True)", "np.load(..., allow_pickle=True)"),
    ],
)
def test_scanner_catches_each_banned_pattern(snippet, expected):
    findings = scan_source(snippet)
    assert len(findings) == 1 and findings[0].endswith(expected), findings


def test_scanner_accepts_the_safe_forms():
    safe = textwrap.dedent("""\
        import json, subprocess, yaml, torch, numpy as np
        from safetensors.torch import load_file
        yaml.safe_load("a: 1")
        yaml.load("a: 1", Loader=yaml.SafeLoader)
        yaml.load("a: 1", yaml.CSafeLoader)
        torch.load("m.pt", weights_only=True)
        np.load("a.npy", allow_pickle=False)
        subprocess.run(["ls", "-l"], shell=False)
        model.eval()
        re.compile("x")
    """)
    assert scan_source(safe) == []


def test_scanner_reports_line_numbers_and_unparsable_files():
    assert scan_source("x = 1\n\nimport pickle\n", "m.py") == ["m.py:3: imports pickle"]
    assert scan_source("def (:\n", "bad.py")[0].startswith("bad.py: does not parse")
