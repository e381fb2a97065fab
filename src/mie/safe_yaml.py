"""YAML parsing with limits: a small hostile document can neither hang nor exhaust memory.

``yaml.safe_load`` already refuses to build arbitrary objects, but two things remain:

* **Alias bombs.** ``a: &a [x, x, ...]`` / ``b: &b [*a, *a, ...]`` stays small as parsed (aliases share one
  object), yet everything that walks the result as a tree (``dataclasses.asdict``, validation, saving
  the config) visits every leaf: ten levels of nine aliases are 9^10 leaves. The node graph is
  measured as the tree it stands for *before* anything is built, and refused above ``max_nodes``.
* **Depth.** The composer recurses once per nesting level, so ``[[[[...`` ends in ``RecursionError``;
  depth is capped at ``max_depth`` and a ``RecursionError`` becomes the same clear error.

Recursive aliases (``&a [*a]``) are refused too: no config can mean an infinite tree.
"""

from __future__ import annotations

from typing import Any

import yaml

from mie.errors import ConfigError, LimitError, MieError

MAX_NODES = 100_000  # a real config has a few hundred values
MAX_DEPTH = 64


def _measure(root: yaml.Node, where: str, max_nodes: int, max_depth: int) -> None:
    """Count the nodes of the tree ``root`` expands to (aliases counted at every use) without recursion."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            total = 1 + sum(sizes[id(child)] for child in _children(node))
            if total > max_nodes:
                raise LimitError(f"expands to more than {max_nodes:,} values (YAML aliases)", where=where,
                                 fix="write the values out or use fewer nested aliases")
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise LimitError("an alias refers to itself (an infinite structure)", where=where,
                             fix="remove the recursive alias")
        if depth > max_depth:
            raise LimitError(f"nested more than {max_depth} levels deep", where=where, fix="flatten the document")
        on_path.add(key)
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in _children(node) if id(child) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _at(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def parse_yaml(text: str | bytes, where: str = "<yaml>", *, max_nodes: int = MAX_NODES,
               max_depth: int = MAX_DEPTH) -> Any:
    """The YAML document in ``text`` as plain Python data, or a one-line error naming ``where``.

    Raises :class:`~mie.errors.ConfigError` for text that is not YAML (or not UTF-8) and
    :class:`~mie.errors.LimitError` for documents too large or too deep once aliases are expanded.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"byte {exc.start} is not UTF-8 text", where=where, fix="save the file as UTF-8") from None
    try:
        loader = yaml.SafeLoader(text)  # its reader already refuses non-printable characters
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {getattr(exc, 'reason', None) or exc}", where=where) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _measure(node, where, max_nodes, max_depth)
        return loader.construct_document(node)
    except MieError:
        raise
    except RecursionError:
        raise LimitError(f"nested more than {max_depth} levels deep", where=where,
                         fix="flatten the document") from None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"invalid YAML{_at(exc)}: {problem}", where=where) from None
    except (ValueError, TypeError, OverflowError, IndexError, KeyError) as exc:  # `!!int` on text that is no int
        raise ConfigError(f"invalid YAML value: a tag (such as !!int) on text it cannot convert ({exc})",
                          where=where, fix="remove the tag or fix the value") from None
    finally:
        loader.dispose()
