"""``mie metadata``: a map of Python sources — modules, classes, functions, docstrings, imports, line counts.

Files are parsed with ``ast`` and never imported or executed, so a module whose top level raises
or has side effects is still described; a file that does not parse is reported with its error and
the walk goes on.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# Directories that hold environments, caches or build output rather than the project's sources.
SKIP_DIRS = {"__pycache__", "site-packages", "node_modules", "build", "dist", "venv"}


def _args(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    """Argument names in signature order; ``*args`` / ``**kwargs`` keep their stars."""
    a = node.args
    names = [arg.arg for arg in a.posonlyargs + a.args]
    if a.vararg:
        names.append("*" + a.vararg.arg)
    names += [arg.arg for arg in a.kwonlyargs]
    if a.kwarg:
        names.append("**" + a.kwarg.arg)
    return names


def _function(node: ast.FunctionDef | ast.AsyncFunctionDef) -> dict[str, Any]:
    return {
        "name": node.name,
        "line": node.lineno,
        "args": _args(node),
        "returns": ast.unparse(node.returns) if node.returns else None,
        "decorators": [ast.unparse(d) for d in node.decorator_list],
        "async": isinstance(node, ast.AsyncFunctionDef),
        "docstring": ast.get_docstring(node),
    }


def _class(node: ast.ClassDef) -> dict[str, Any]:
    return {
        "name": node.name,
        "line": node.lineno,
        "bases": [ast.unparse(b) for b in node.bases],
        "docstring": ast.get_docstring(node),
        "methods": [_function(n) for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))],
    }


def _imports(tree: ast.Module) -> list[str]:
    """Imported modules/names anywhere in the file, as written (``os``, ``typing.Any``, ``.base.X``)."""
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            found += [f"{base}.{alias.name}" if node.module else f"{base}{alias.name}" for alias in node.names]
    return sorted(set(found))


def line_counts(text: str) -> dict[str, int]:
    """Total, code, blank and comment lines (a comment line holds only a ``#`` comment)."""
    lines = text.splitlines()
    blank = sum(1 for line in lines if not line.strip())
    comment = sum(1 for line in lines if line.strip().startswith("#"))
    return {"total": len(lines), "code": len(lines) - blank - comment, "blank": blank, "comment": comment}


def module_name(path: Path) -> str:
    """Dotted import name of ``path``: parent folders count while they are packages (hold ``__init__.py``)."""
    path = path.resolve()
    parts = [] if path.name == "__init__.py" else [path.stem]
    folder = path.parent
    while (folder / "__init__.py").is_file():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts) or path.stem


def describe_file(path: Path, root: Path | None = None) -> dict[str, Any]:
    """Everything ``ast`` tells about one file; ``error`` is set (and the rest empty) when it cannot parse."""
    root = root or path.parent
    entry: dict[str, Any] = {
        "path": path.relative_to(root).as_posix() if path != root else path.name,
        "module": module_name(path),
        "error": None, "docstring": None, "classes": [], "functions": [], "imports": [],
        "lines": {"total": 0, "code": 0, "blank": 0, "comment": 0},
    }
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as exc:
        entry["error"] = f"{type(exc).__name__}: {exc}"
        return entry
    entry["lines"] = line_counts(text)
    try:
        tree = ast.parse(text, filename=str(path))
    except (SyntaxError, ValueError) as exc:  # ValueError: source with NUL bytes
        where = f" (line {exc.lineno})" if isinstance(exc, SyntaxError) and exc.lineno else ""
        entry["error"] = f"{type(exc).__name__}: {getattr(exc, 'msg', exc)}{where}"
        return entry
    entry["docstring"] = ast.get_docstring(tree)
    entry["classes"] = [_class(n) for n in tree.body if isinstance(n, ast.ClassDef)]
    entry["functions"] = [_function(n) for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    entry["imports"] = _imports(tree)
    return entry


def python_files(root: Path) -> list[Path]:
    """Every ``.py`` file under ``root`` in path order, skipping hidden, cache and environment folders."""
    if root.is_file():
        return [root]
    return sorted(
        p for p in root.rglob("*.py")
        if not any(part.startswith(".") or part in SKIP_DIRS for part in p.relative_to(root).parts[:-1])
    )


def collect(path: str | Path) -> dict[str, Any]:
    """The report for a file or a directory tree: one entry per module plus totals."""
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"path '{root}' does not exist; pass a file or a source folder")
    base = root.parent if root.is_file() else root
    modules = [describe_file(p, base) for p in python_files(root)]
    summary = {
        "files": len(modules),
        "errors": sum(1 for m in modules if m["error"]),
        "classes": sum(len(m["classes"]) for m in modules),
        "functions": sum(len(m["functions"]) for m in modules),
        "methods": sum(len(c["methods"]) for m in modules for c in m["classes"]),
        "lines": {k: sum(m["lines"][k] for m in modules) for k in ("total", "code", "blank", "comment")},
    }
    return {"root": str(root), "summary": summary, "modules": modules}


def _first_line(doc: str | None) -> str:
    return doc.strip().splitlines()[0] if doc and doc.strip() else ""


def to_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: a summary table, then one section per module."""
    s = report["summary"]
    out = [
        f"# Code metadata: `{report['root']}`", "",
        "| files | errors | classes | functions | methods | lines | code | blank | comment |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {s['files']} | {s['errors']} | {s['classes']} | {s['functions']} | {s['methods']} | "
        + " | ".join(str(s["lines"][k]) for k in ("total", "code", "blank", "comment")) + " |",
    ]
    for m in report["modules"]:
        lines = m["lines"]
        out += ["", f"## `{m['module']}` ({m['path']})", "",
                f"{lines['total']} lines: {lines['code']} code, {lines['blank']} blank, {lines['comment']} comment"]
        if m["error"]:
            out += ["", f"**Could not parse:** {m['error']}"]
            continue
        if m["docstring"]:
            out += ["", _first_line(m["docstring"])]
        for c in m["classes"]:
            bases = f"({', '.join(c['bases'])})" if c["bases"] else ""
            out += ["", f"### class `{c['name']}{bases}` (line {c['line']})"]
            if c["docstring"]:
                out += ["", _first_line(c["docstring"])]
            out += [""] if c["methods"] else []
            out += [f"- `{f['name']}({', '.join(f['args'])})` (line {f['line']}) {_first_line(f['docstring'])}".rstrip()
                    for f in c["methods"]]
        if m["functions"]:
            out += ["", "### functions", ""]
            out += [f"- `{f['name']}({', '.join(f['args'])})` (line {f['line']}) {_first_line(f['docstring'])}".rstrip()
                    for f in m["functions"]]
        if m["imports"]:
            out += ["", "imports: " + ", ".join(f"`{i}`" for i in m["imports"])]
    return "\n".join(out) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mie metadata``."""
    default = Path(__file__).resolve().parents[1]
    parser.add_argument("path", nargs="?", default=str(default),
                        help="a .py file or a folder to describe (default: the mie package itself)")
    parser.add_argument("--format", choices=("json", "markdown"), default="json", help="output format")
    parser.add_argument("--output", "-o", help="write to this file instead of stdout")


def run(args: argparse.Namespace) -> int:
    """Describe ``args.path`` and print or write the report."""
    report = collect(args.path)
    text = json.dumps(report, indent=2) + "\n" if args.format == "json" else to_markdown(report)
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        logger.info("wrote %s (%d modules)", out, report["summary"]["files"])
    else:
        print(text, end="")
    return 0
