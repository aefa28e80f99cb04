#!/usr/bin/env python3
"""Structure check of a package (issue 13 item 9), run by scripts/test after mypy.

Fails (exit 1, one line per fault) on:

- an import cycle among the package's modules. Every import counts: at the top,
  inside a function (deferred), under ``if TYPE_CHECKING``; ``import pasteur.x``,
  ``from pasteur import x``, ``from . import x`` and ``from .x import y`` alike;
- a class over ``MAX_LINES`` lines or over ``MAX_ATTRIBUTES`` instance attributes:
  the names assigned as ``self.NAME`` in its methods, its dataclass fields and
  its ``__slots__``.

Known debt is listed in a TOML file (default scripts/structure-debt.toml): each
offending class with the numbers measured when it was listed, each cycle by its
modules. A listed class may shrink but not grow past its numbers; a listed entry
that no longer offends fails too, asking to be removed, so the list only
tightens.

    scripts/structure.py [PACKAGE_DIR] [--debt FILE]   (default src/pasteur)
"""

from __future__ import annotations

import argparse
import ast
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_LINES = 400
MAX_ATTRIBUTES = 20
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Edge:
    source: str  # importing module
    target: str  # imported module
    where: str  # file:line of the import


@dataclass(frozen=True)
class ClassSize:
    name: str  # module.Class (module.Outer.Inner when nested)
    where: str
    lines: int
    attributes: int


# -- modules and imports ---------------------------------------------------------------


def _shown(path: Path) -> str:
    """A path as messages show it: relative to the working directory when under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def modules(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package."""
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = [package_dir.name, *path.relative_to(package_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The module of the package that importing `name` loads last (its longest known prefix)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def imports(module: str, path: Path, known: dict[str, Path]) -> Iterator[Edge]:
    """Every import of a module of the package by `module`, wherever it stands."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        where = f"{_shown(path)}:{getattr(node, 'lineno', 0)}"
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_package:
                    base.pop()
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            # `from origin import name` loads origin.name when it is a module, origin always.
            targets = [origin, *(f"{origin}.{alias.name}" for alias in node.names)]
        for name in targets:
            target = _resolve(name, known)
            if target is not None and target != module:
                yield Edge(module, target, where)


def cycles(edges: list[Edge]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), sorted."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def cycle_path(component: list[str], edges: list[Edge]) -> list[Edge]:
    """One closed path through a component, as the imports that make it (for the message)."""
    inside = set(component)
    out: dict[str, list[Edge]] = {}
    for e in edges:
        if e.source in inside and e.target in inside:
            out.setdefault(e.source, []).append(e)
    start = component[0]
    # breadth-first from start back to start
    paths: dict[str, list[Edge]] = {start: []}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for e in out.get(v, []):
            if e.target == start:
                return [*paths[v], e]
            if e.target not in paths:
                paths[e.target] = [*paths[v], e]
                queue.append(e.target)
    return []


# -- classes ---------------------------------------------------------------------------


def _is_dataclass(node: ast.ClassDef) -> bool:
    for d in node.decorator_list:
        f = d.func if isinstance(d, ast.Call) else d
        if (isinstance(f, ast.Name) and f.id == "dataclass") or (
                isinstance(f, ast.Attribute) and f.attr == "dataclass"):
            return True
    return False


def _walk_method(node: ast.AST) -> Iterator[ast.AST]:
    """The nodes of a method, its inner functions included, nested classes left out."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.ClassDef):
            continue
        yield child
        yield from _walk_method(child)


def _self_names(target: ast.expr, me: str) -> Iterator[str]:
    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) \
            and target.value.id == me:
        yield target.attr
    elif isinstance(target, (ast.Tuple, ast.List)):
        for element in target.elts:
            yield from _self_names(element, me)
    elif isinstance(target, ast.Starred):
        yield from _self_names(target.value, me)


def attributes(node: ast.ClassDef) -> set[str]:
    names: set[str] = set()
    dataclass = _is_dataclass(node)
    for stmt in node.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and dataclass:
            annotation = ast.unparse(stmt.annotation)
            if "ClassVar" not in annotation:
                names.add(stmt.target.id)
        elif isinstance(stmt, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__slots__" for t in stmt.targets):
            if isinstance(stmt.value, (ast.Tuple, ast.List, ast.Set)):
                names.update(e.value for e in stmt.value.elts
                             if isinstance(e, ast.Constant) and isinstance(e.value, str))
            elif isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
                names.add(stmt.value.value)
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.args.args:
            decorators = {ast.unparse(d) for d in stmt.decorator_list}
            if decorators & {"staticmethod", "classmethod"}:
                continue
            me = stmt.args.args[0].arg
            for sub in _walk_method(stmt):
                if isinstance(sub, ast.Assign):
                    for t in sub.targets:
                        names.update(_self_names(t, me))
                elif isinstance(sub, (ast.AnnAssign, ast.AugAssign)):
                    names.update(_self_names(sub.target, me))
    return names


def classes(module: str, path: Path) -> Iterator[ClassSize]:
    tree = ast.parse(path.read_text(), str(path))

    def visit(node: ast.AST, prefix: str) -> Iterator[ClassSize]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                name = f"{prefix}.{child.name}"
                lines = (child.end_lineno or child.lineno) - child.lineno + 1
                where = f"{_shown(path)}:{child.lineno}"
                yield ClassSize(name, where, lines, len(attributes(child)))
                yield from visit(child, name)
            else:
                yield from visit(child, prefix)

    yield from visit(tree, module)


# -- the check -------------------------------------------------------------------------


def check(package_dir: Path, debt: dict[str, Any]) -> list[str]:
    """The faults of a package, one line each (empty: it passes)."""
    known = modules(package_dir)
    edges = [e for m, p in known.items() for e in imports(m, p, known)]
    faults = []
    listed_cycles = {tuple(sorted(k.split())): why for k, why in debt.get("cycles", {}).items()}
    found_cycles = cycles(edges)
    for component in found_cycles:
        if tuple(component) in listed_cycles:
            continue
        path = ", ".join(f"{e.source} imports {e.target} at {e.where}"
                         for e in cycle_path(component, edges))
        faults.append(f"import cycle among {', '.join(component)}: {path}; "
                      "move the shared part down into a module both import")
    for key in sorted(set(listed_cycles) - {tuple(c) for c in found_cycles}):
        faults.append(f"no import cycle among {', '.join(key)} any more: "
                      "remove it from the allowlist (debt file)")
    listed = debt.get("classes", {})
    seen = set()
    for m, p in known.items():
        for c in classes(m, p):
            over = c.lines > MAX_LINES or c.attributes > MAX_ATTRIBUTES
            size = f"{c.lines} lines, {c.attributes} instance attributes"
            entry = listed.get(c.name)
            if entry is None:
                if over:
                    faults.append(f"class {c.name} ({c.where}) has {size}: over "
                                  f"{MAX_LINES} lines or {MAX_ATTRIBUTES} attributes; split it")
                continue
            seen.add(c.name)
            if not over:
                faults.append(f"class {c.name} ({c.where}) has {size}, within {MAX_LINES} "
                              f"lines and {MAX_ATTRIBUTES} attributes: remove it from the "
                              "allowlist (debt file)")
            elif c.lines > entry["lines"] or c.attributes > entry["attributes"]:
                faults.append(f"class {c.name} ({c.where}) grew to {size}, past its known "
                              f"debt of {entry['lines']} lines, {entry['attributes']} "
                              "attributes: shrink it, do not grow it")
    for name in sorted(set(listed) - seen):
        faults.append(f"class {name} not found: remove it from the allowlist (debt file)")
    return faults


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("package", nargs="?", type=Path, default=ROOT / "src" / "pasteur")
    parser.add_argument("--debt", type=Path, default=ROOT / "scripts" / "structure-debt.toml",
                        help="TOML file of known offenders ('-' or an empty file: none)")
    args = parser.parse_args(argv)
    debt = {} if str(args.debt) == "-" else tomllib.loads(args.debt.read_text())
    faults = check(args.package, debt)
    for fault in faults:
        print(f"structure: {fault}", file=sys.stderr)
    return 1 if faults else 0


if __name__ == "__main__":
    sys.exit(main())
