"""The architecture, enforced from the source text: layering, no import cycles, small files.

Every module under src/mie is parsed with ``ast`` and never imported, so a broken module is reported
rather than hidden behind an ImportError. Each checker is also shown to fire on a made-up example.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
LIBRARY = ("mie.models", "mie.losses", "mie.data", "mie.tokenization", "mie.training", "mie.evaluation",
           "mie.explain", "mie.safety", "mie.optimization", "mie.io", "mie.config", "mie.pretrained", "mie.errors",
           "mie.safe_yaml", "mie.text_input", "mie.lazy", "mie.registry")
APPLICATION = ("mie.recipes", "mie.cli", "mie.serve", "mie.api", "mie.tools", "mie.__main__")
ROOT = "mie"  # the top package: version and lazy names only
CLI = ("mie.cli",)
# Only the command line itself (and ``python -m mie``) imports it: the web app, the recipes and the Python API
# reach the library directly, so none of them needs argparse's world or breaks when a flag changes.
CLI_IMPORTERS = ("mie.cli", "mie.__main__")
MAX_LINES = 400  # the project rule: every source file has fewer lines than this


def within(module: str, packages: Iterable[str]) -> bool:
    """Whether ``module`` is one of ``packages`` or inside one of them."""
    return any(module == p or module.startswith(p + ".") for p in packages)


def discover(root: Path = SRC) -> dict[str, Path]:
    """Module name -> file for every ``.py`` file under ``root/mie`` (a package is its ``__init__``)."""
    modules = {}
    for path in sorted((root / "mie").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    """``if TYPE_CHECKING:`` or ``if typing.TYPE_CHECKING:``."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(node: ast.AST, type_checking: bool) -> Iterable[ast.Import | ast.ImportFrom]:
    """Every import statement below ``node``, at any depth; ``if TYPE_CHECKING:`` bodies only if asked."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif isinstance(child, ast.If) and _is_type_checking(child.test) and not type_checking:
            for other in child.orelse:  # the else branch runs at run time
                yield from _import_nodes(ast.Module(body=[other], type_ignores=[]), type_checking)
        else:
            yield from _import_nodes(child, type_checking)


def _known(name: str, modules: Mapping[str, object]) -> str | None:
    """``name`` if it is a module, else its longest prefix that is one (``mie.x.attr`` -> ``mie.x``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, tree: ast.Module, modules: Mapping[str, object], is_package: bool,
               type_checking: bool = False) -> set[str]:
    """The ``mie`` modules that ``module`` imports, module level and inside functions alike.

    ``from mie.x import y`` is ``mie.x.y`` when that is a module, else ``mie.x``; relative imports are
    resolved against the module's package; parent packages get no implicit edge.
    """
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in _import_nodes(tree, type_checking):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for target in targets:
            if within(target, ("mie",)) and (known := _known(target, modules)) and known != module:
                found.add(known)
    return found


def import_graph(sources: Mapping[str, str], packages: Iterable[str] = (), type_checking: bool = False,
                 ) -> dict[str, set[str]]:
    """Module -> the modules it imports, from module name -> source text (``packages`` are ``__init__``)."""
    packages = set(packages)
    return {name: imports_of(name, ast.parse(text), sources, name in packages, type_checking)
            for name, text in sources.items()}


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module, as ``[a, b, ..., a]``.

    Tarjan's algorithm finds the components; a breadth-first search inside each gives a shortest cycle
    through its first module, which is what a reader needs to break it.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                connect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_shortest_cycle(graph, component) for component in sorted(components)]


def _shortest_cycle(graph: Mapping[str, Iterable[str]], component: list[str]) -> list[str]:
    """A shortest path from ``component[0]`` back to itself inside the component."""
    start, members = component[0], set(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for succ in sorted(graph.get(node, ())):
                if succ == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if succ in members and succ not in parents:
                    parents[succ] = node
                    following.append(succ)
        frontier = following
    raise AssertionError(f"{component} is not strongly connected")


def layering_violations(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """``library module -> application module`` for every import from the library into the application."""
    return [f"{module} -> {target}" for module in sorted(graph) if within(module, LIBRARY)
            for target in sorted(graph[module]) if within(target, APPLICATION)]


def cli_violations(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """``module -> mie.cli...`` for every import of the command line from outside it (``mie serve`` included)."""
    return [f"{module} -> {target}" for module in sorted(graph) if not within(module, CLI_IMPORTERS)
            for target in sorted(graph[module]) if within(target, CLI)]


def unlayered(modules: Iterable[str]) -> list[str]:
    """The modules that are neither library nor application (a new package must be given its layer)."""
    return sorted(m for m in modules if m != ROOT and not within(m, LIBRARY + APPLICATION))


def long_files(paths: Iterable[Path], limit: int = MAX_LINES) -> list[str]:
    """``path: N lines`` for every file with ``limit`` lines or more."""
    counts = ((path, len(path.read_text(encoding="utf-8").splitlines())) for path in paths)
    return [f"{path.relative_to(SRC.parent) if path.is_relative_to(SRC.parent) else path}: {n} lines"
            for path, n in counts if n >= limit]


@pytest.fixture(scope="module")
def project() -> tuple[dict[str, str], set[str]]:
    """Source text of every module of src/mie and the names of its packages."""
    modules = discover()
    sources = {name: path.read_text(encoding="utf-8") for name, path in modules.items()}
    return sources, {name for name, path in modules.items() if path.name == "__init__.py"}


# ----------------------------------------------------------------------------- the project itself
def test_discovery_sees_the_packages(project) -> None:
    sources, packages = project
    assert {"mie", "mie.data", "mie.models", "mie.cli"} <= packages
    assert {"mie.data.registry", "mie.models.text", "mie.config"} <= set(sources)


def test_library_never_imports_the_application(project) -> None:
    graph = import_graph(*project, type_checking=True)  # a type-only import is still a dependency
    assert layering_violations(graph) == []


def test_every_module_has_a_layer(project) -> None:
    sources, _ = project
    assert unlayered(sources) == []


def test_only_the_command_line_imports_the_cli(project) -> None:
    graph = import_graph(*project, type_checking=True)
    assert {"mie.serve.app", "mie.serve.state", "mie.serve.chat"} <= set(graph)  # the web app is checked
    assert cli_violations(graph) == []


def test_no_import_cycles(project) -> None:
    cycles = find_cycles(import_graph(*project))
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_long_files() -> None:
    offenders = long_files(discover().values())
    assert not offenders, f"files of {MAX_LINES} lines or more (split them by concept):\n" + "\n".join(offenders)


# ----------------------------------------------------------------------------- each checker fires
def _graph(sources: dict[str, str], packages: Iterable[str] = ()) -> dict[str, set[str]]:
    """The import graph of made-up modules, given as name -> source text."""
    return import_graph({name: textwrap.dedent(text) for name, text in sources.items()}, packages)


def test_imports_are_resolved_to_modules_at_any_depth() -> None:
    graph = _graph({
        "mie.pkg": "",
        "mie.pkg.a": "from mie.pkg import b, CONSTANT\nimport mie.pkg.c\n",
        "mie.pkg.b": "def f():\n    from . import c\n    from .c import name\n",
        "mie.pkg.c": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from mie.pkg import a\n"
                     "else:\n    import mie.pkg.b\nimport numpy\n",
    }, packages={"mie.pkg"})
    # CONSTANT is no module, so it resolves to the package; no implicit edge from a module to its package.
    assert graph == {"mie.pkg": set(), "mie.pkg.a": {"mie.pkg.b", "mie.pkg", "mie.pkg.c"},
                     "mie.pkg.b": {"mie.pkg.c"}, "mie.pkg.c": {"mie.pkg.b"}}


def test_cycle_checker_reports_the_modules_of_a_cycle() -> None:
    graph = _graph({"mie.a": "import mie.b", "mie.b": "def late():\n    from mie import c",
                    "mie.c": "from mie.a import thing", "mie.d": "import mie.a"})
    assert find_cycles(graph) == [["mie.a", "mie.b", "mie.c", "mie.a"]]
    graph = _graph({"mie.a": "import mie.b",
                    "mie.b": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import mie.a\n"})
    assert find_cycles(graph) == []  # a type-only import is no cycle at run time
    two = {"x": {"y", "z"}, "y": {"x"}, "z": {"w"}, "w": {"z"}}
    assert find_cycles(two) == [["w", "z", "w"], ["x", "y", "x"]]


def test_layering_checker_fires_on_a_function_level_import() -> None:
    graph = _graph({"mie.data.x": "def main():\n    from mie.cli import run\n", "mie.cli": "",
                    "mie.cli.y": "import mie.data.x", "mie.recipes": "", "mie.io": "import mie.recipes"})
    assert layering_violations(graph) == ["mie.data.x -> mie.cli", "mie.io -> mie.recipes"]


def test_cli_checker_fires_on_the_web_app_importing_the_cli_in_a_function() -> None:
    graph = _graph({"mie.cli": "from mie.serve import app", "mie.cli.generate": "import mie.pretrained",
                    "mie.__main__": "from mie.cli import main", "mie.pretrained": "", "mie.serve": "",
                    "mie.serve.app": "def load():\n    from mie.cli.generate import load_model\n",
                    "mie.recipes": "import mie.cli"}, packages={"mie.cli", "mie.serve", "mie.recipes"})
    assert cli_violations(graph) == ["mie.recipes -> mie.cli", "mie.serve.app -> mie.cli.generate"]


def test_every_module_needs_a_layer() -> None:
    assert unlayered(["mie", "mie.models.x", "mie.serve.app", "mie.newthing", "mie.newthing.y"]) == [
        "mie.newthing", "mie.newthing.y"]


def test_long_file_checker_names_the_offender(tmp_path: Path) -> None:
    (tmp_path / "short.py").write_text("x = 1\n" * (MAX_LINES - 1))
    (tmp_path / "long.py").write_text("x = 1\n" * MAX_LINES)
    offenders = long_files(sorted(tmp_path.glob("*.py")))
    assert offenders == [f"{tmp_path / 'long.py'}: {MAX_LINES} lines"]


# ----------------------------------------------------------------------------- one transformer stack
SDPA = "scaled_dot_product_attention"


def sdpa_modules(sources: Mapping[str, str], package: str = "mie.models") -> list[str]:
    """The modules of ``package`` whose text names ``scaled_dot_product_attention`` (code or comment alike)."""
    return sorted(name for name, text in sources.items() if within(name, (package,)) and SDPA in text)


def classes_named(sources: Mapping[str, str], name: str) -> list[str]:
    """``module.Class`` for every class definition called ``name``, at any depth of any module."""
    return sorted(f"{module}.{node.name}" for module, text in sources.items()
                  for node in ast.walk(ast.parse(text)) if isinstance(node, ast.ClassDef) and node.name == name)


def test_one_module_of_the_models_calls_scaled_dot_product_attention(project) -> None:
    """``mie.models.attention.attend`` is the one call: every family attends through it (issue 27)."""
    sources, _ = project
    assert sdpa_modules(sources) == ["mie.models.attention"]


def test_one_class_is_named_kvcache(project) -> None:
    sources, _ = project
    assert classes_named(sources, "KVCache") == ["mie.models.kv_cache.KVCache"]


def test_stack_checkers_fire_on_a_made_up_project() -> None:
    sources = {"mie.models.attention": f"F.{SDPA}(q, k, v)", "mie.models.lm": f"# calls torch's {SDPA}",
               "mie.tools.doctor": f"F.{SDPA}(q, q, q)", "mie.models.cache": "class KVCache:\n    pass",
               "mie.models.lm.gen": "def f():\n    class KVCache:\n        pass\n"}
    assert sdpa_modules(sources) == ["mie.models.attention", "mie.models.lm"]
    assert classes_named(sources, "KVCache") == ["mie.models.cache.KVCache", "mie.models.lm.gen.KVCache"]
