"""Every first-party name the code imports or reaches through a module exists (AST only: nothing is imported).

Most of the library imports its heavier modules inside functions, so a rename that misses one of those
imports only fails when that function runs: `make demo`'s last step once imported a module by its old name
for two weeks while every test passed. This walks every `import` and `from ... import` of a first-party
module in the library, the adapters (kfp_pipelines, dags, bento), the benchmarks and the tests, wherever the
statement is (functions included), and each `alias.attribute` read of an imported first-party module, and
checks the target is a module or a name bound at the top level of that module.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
SCANNED = [SRC / "cscnn", ROOT / "kfp_pipelines", ROOT / "dags", ROOT / "bento", ROOT / "benchmarks", ROOT / "tests"]
PACKAGES = ("cscnn", "kfp_pipelines")  # the importable first-party packages whose names are checked


def _py_files() -> list[Path]:
    return sorted(p for folder in SCANNED for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _module_name(path: Path) -> str:
    base = SRC if path.is_relative_to(SRC) else ROOT
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in _py_files() if _module_name(p).split(".")[0] in PACKAGES}


@functools.cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _top_level_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The module's own statements, into `if`/`try`/`with` blocks (which still bind module names)."""
    for node in body:
        yield node
        if isinstance(node, ast.If | ast.With):
            yield from _top_level_statements(node.body)
            yield from _top_level_statements(getattr(node, "orelse", []))
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _top_level_statements(block)


def _target_names(target: ast.expr) -> Iterator[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, ast.Tuple | ast.List):
        for element in target.elts:
            yield from _target_names(element)
    elif isinstance(target, ast.Starred):
        yield from _target_names(target.value)


@functools.cache
def _bound(module: str) -> frozenset[str] | None:
    """The names a module binds at its top level; None when it answers any name (a module `__getattr__`)."""
    names: set[str] = set()
    for node in _top_level_statements(_tree(_modules()[module]).body):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if node.name == "__getattr__":
                return None
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                names.update(_target_names(target))
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            names.update(_target_names(node.target))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            if any(alias.name == "*" for alias in node.names):
                return None
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return frozenset(names)


def _has(module: str, name: str) -> bool:
    bound = _bound(module)
    return f"{module}.{name}" in _modules() or bound is None or name in bound


def _absolute(path: Path, level: int, module: str | None) -> str:
    if level == 0:
        return module or ""
    own = _module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    parts = package.split(".")
    base = parts[: len(parts) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _first_party(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


def _problems(path: Path, tree: ast.Module | None = None) -> Iterator[str]:
    """Imports of missing first-party modules or names, and reads of missing attributes of imported modules
    (in the file at `path`, or in `tree` read as if it were there)."""
    tree = tree or _tree(path)
    where = path.relative_to(ROOT)
    aliases: dict[str, str] = {}  # a local name bound to a first-party module -> that module
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not _first_party(alias.name):
                    continue
                if alias.name not in _modules():
                    yield f"{where}:{node.lineno}: `import {alias.name}`: no such module"
                elif alias.asname:
                    aliases[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(path, node.level, node.module)
            if not _first_party(module):
                continue
            if module not in _modules():
                yield f"{where}:{node.lineno}: `from {module} import ...`: no such module"
                continue
            for alias in node.names:
                if alias.name == "*":
                    continue
                if not _has(module, alias.name):
                    yield f"{where}:{node.lineno}: `from {module} import {alias.name}`: {module} has no {alias.name}"
                elif f"{module}.{alias.name}" in _modules():
                    aliases[alias.asname or alias.name] = f"{module}.{alias.name}"
    shadowed = _rebound(tree, set(aliases))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            module = aliases[node.value.id]
            if node.value.id not in shadowed and not _has(module, node.attr):
                yield f"{where}:{node.lineno}: `{node.value.id}.{node.attr}`: {module} has no {node.attr}"


def _rebound(tree: ast.Module, names: set[str]) -> set[str]:
    """Module aliases that the file also binds to something else (a parameter, an assignment): not checked."""
    rebound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.arg in names:
            rebound.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id in names:
            rebound.add(node.id)
    return rebound


def test_the_walk_sees_the_library_and_its_lazy_imports() -> None:
    """The check below is only as good as what it reads: the modules it knows, and imports inside functions."""
    modules = _modules()
    assert {"cscnn.tools.model_registry", "cscnn.entrypoints.demo", "kfp_pipelines"} <= set(modules)
    assert "resolve" in (_bound("cscnn.tools.model_registry") or ())
    lazy = [
        n
        for f in ast.walk(_tree(modules["cscnn.entrypoints.demo"]))
        if isinstance(f, ast.FunctionDef)
        for n in ast.walk(f)
        if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("cscnn.tools")
    ]
    assert lazy, "demo.py imports cscnn.tools inside a function"


def test_a_missing_name_is_found() -> None:
    """The walk reports an import of a name a package does not have and an attribute a module does not bind
    (the text is read as if it were demo.py's)."""
    text = "def f():\n    from cscnn.tools import registry\n    from cscnn.tools import model_registry\n"
    text += "    return registry, model_registry.no_such_name, model_registry.resolve\n"
    problems = list(_problems(SRC / "cscnn" / "entrypoints" / "demo.py", ast.parse(text)))
    assert any("cscnn.tools has no registry" in p for p in problems), problems
    assert any("model_registry.no_such_name" in p for p in problems), problems
    assert not any("model_registry.resolve" in p for p in problems), problems


def test_every_first_party_import_and_attribute_exists() -> None:
    problems = [p for path in _py_files() for p in _problems(path)]
    assert not problems, "first-party names that do not exist:\n" + "\n".join(problems)
