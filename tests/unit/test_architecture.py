"""The library's architecture, checked on the source text (AST only: nothing under test is imported).

- layers: a module imports only from its own layer or lower ones; the library reaches kfp_pipelines, dags or
  bento only inside functions of `cscnn.entrypoints`;
- the modules the Airflow DAG files import at parse time use the standard library only;
- the checkout's bento/ and dags/ are never found through a path relative to a module of the library;
- the day status values are spelled in `cscnn.daily.status` only;
- size limits for modules and functions;
- every third-party import (the tests' and benchmarks' too) is a dependency declared in pyproject.toml, in the
  right group.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
PACKAGE = SRC / "cscnn"
KFP = ROOT / "kfp_pipelines"

# Lowest first. `serving`, `daily` and `online` are peers: the same rank, and none may import another.
LAYER_RANK = {
    "core": 0,
    "data": 1,
    "models": 2,
    "training": 3,
    "tools": 4,
    "serving": 5,
    "daily": 5,
    "online": 5,
    "entrypoints": 6,
}
CORE = {
    "cscnn",
    "cscnn.errors",
    "cscnn.config",
    "cscnn.state",
    "cscnn.files",
    "cscnn.project",
    "cscnn.dates",
    "cscnn.variants",
    "cscnn.cluster",
    "cscnn.locks",
    "cscnn.settings",
}
OUTSIDE_THE_LIBRARY = {"kfp_pipelines", "dags", "bento"}  # only lazily, from functions of cscnn.entrypoints

# Imported by the DAG files at parse time: the standard library and each other only (their packages'
# __init__ modules run too, so they are held to the same rule).
STDLIB_ONLY = {
    "cscnn.daily.status",
    "cscnn.dates",
    "cscnn.files",
    "cscnn.state",
    "cscnn.errors",
    "cscnn.entrypoints.orchestration",
    "cscnn.settings",
}

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
SIZE_WAIVER = "size:"  # a comment on the line before the `def` (or on a module's first line) with the reason

# Import name (longest dotted prefix wins) -> distribution, where the two differ.
IMPORT_TO_DISTRIBUTION = {
    "PIL": "pillow",
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "yaml": "pyyaml",
    "great_expectations": "great-expectations",
    "airflow": "apache-airflow",
    "kfp.kubernetes": "kfp-kubernetes",
    "typing_extensions": "typing-extensions",
    "prometheus_client": "prometheus-client",
    "git": "gitpython",
}
FIRST_PARTY = {"cscnn", "kfp_pipelines", "dags", "bento", "test_models"}  # test_models: a test module, on sys.path


# --- reading the source ------------------------------------------------------------------------------------


def _py_files(*folders: Path) -> list[Path]:
    return sorted(p for folder in folders for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _module_name(path: Path) -> str:
    base = SRC if path.is_relative_to(SRC) else ROOT
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def _modules() -> dict[str, Path]:
    """Every first-party module that can be imported: the library and kfp_pipelines."""
    return {_module_name(p): p for p in _py_files(PACKAGE, KFP)}


@functools.cache
def _text(path: Path) -> str:
    return path.read_text()


@functools.cache
def _parse(path: Path) -> tuple[ast.Module, tuple[str, ...]]:
    text = _text(path)
    return ast.parse(text, filename=str(path)), tuple(text.splitlines())


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _code(path: Path, node: ast.AST) -> str:
    segment = ast.get_source_segment(_text(path), node) or ""
    segment = " ".join(segment.split())
    return segment if len(segment) <= 100 else segment[:97] + "..."


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    code: str
    module: str  # the imported module, relative imports resolved ("" for `from . import x` at the top)
    names: tuple[str, ...]  # the names of `from module import a, b`; empty for `import module`
    in_function: bool
    type_checking: bool  # under `if TYPE_CHECKING:`, never executed

    @property
    def module_level(self) -> bool:
        return not self.in_function and not self.type_checking

    def targets(self) -> list[str]:
        """The modules this statement imports: `from cscnn import x` is `cscnn.x` when that is a module."""
        if not self.names:
            return [self.module]
        known = _modules()
        return [f"{self.module}.{n}" if f"{self.module}.{n}" in known else self.module for n in self.names]

    def dotted_candidates(self) -> list[str]:
        """For third-party lookups: `from kfp import kubernetes` may be the module `kfp.kubernetes`."""
        if not self.names:
            return [self.module]
        return [f"{self.module}.{n}" for n in self.names]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve_relative(path: Path, level: int, module: str | None) -> str:
    if level == 0:
        return module or ""
    own = _module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    parts = package.split(".")
    base = parts[: len(parts) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _imports(path: Path) -> Iterator[Import]:
    tree, _ = _parse(path)

    def visit(node: ast.AST, in_function: bool, type_checking: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(path, child.lineno, _code(path, child), alias.name, (), in_function, type_checking)
            elif isinstance(child, ast.ImportFrom):
                module = _resolve_relative(path, child.level, child.module)
                if module != "__future__":
                    names = tuple(a.name for a in child.names)
                    yield Import(path, child.lineno, _code(path, child), module, names, in_function, type_checking)
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from visit(child, True, type_checking)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    yield from visit(ast.Module(body=[stmt], type_ignores=[]), in_function, True)
                for stmt in child.orelse:
                    yield from visit(ast.Module(body=[stmt], type_ignores=[]), in_function, type_checking)
            else:
                yield from visit(child, in_function, type_checking)

    yield from visit(tree, False, False)


def _where(imp: Import) -> str:
    return f"{_rel(imp.path)}:{imp.line}: `{imp.code}`"


def _top(name: str) -> str:
    return name.partition(".")[0]


def _is_stdlib(name: str) -> bool:
    return _top(name) in sys.stdlib_module_names or _top(name) == "__future__"


# --- layers --------------------------------------------------------------------------------------------------


def _layer(module: str) -> str | None:
    if module in CORE:
        return "core"
    parts = module.split(".")
    if parts[0] == "cscnn" and len(parts) > 1 and parts[1] in LAYER_RANK and parts[1] != "core":
        return parts[1]
    return None


def test_every_library_module_is_in_a_layer() -> None:
    unplaced = [name for name in _modules() if _top(name) == "cscnn" and _layer(name) is None]
    assert not unplaced, f"modules in no layer (add them to CORE or move them into a layer package): {unplaced}"


def _layer_violations(path: Path) -> Iterator[str]:
    source = _module_name(path)
    source_layer = _layer(source)
    for imp in _imports(path):
        for target in imp.targets():
            top = _top(target)
            if top in OUTSIDE_THE_LIBRARY:
                if source_layer != "entrypoints" or not imp.in_function:
                    yield (
                        f"{_where(imp)}: the library may import {top} only inside a function of cscnn.entrypoints "
                        f"({source} is in layer {source_layer})"
                    )
                continue
            if top != "cscnn":
                continue
            target_layer = _layer(target)
            if target_layer is None:
                yield f"{_where(imp)}: {target} is in no layer"
            elif source_layer is None:
                yield f"{_where(imp)}: {source} is in no layer"
            elif target_layer != source_layer and LAYER_RANK[target_layer] >= LAYER_RANK[source_layer]:
                kind = "a peer" if LAYER_RANK[target_layer] == LAYER_RANK[source_layer] else "a higher"
                yield (
                    f"{_where(imp)}: {source} (layer {source_layer}) imports {target} from {kind} layer "
                    f"({target_layer})"
                )


def test_imports_follow_the_layers() -> None:
    violations = [v for path in _py_files(PACKAGE) for v in _layer_violations(path)]
    assert not violations, (
        "imports against the layers (lowest first: " + ", ".join(LAYER_RANK) + "):\n" + "\n".join(violations)
    )


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def test_modules_the_dags_import_at_parse_time_use_the_standard_library_only() -> None:
    allowed = STDLIB_ONLY | {p for m in STDLIB_ONLY for p in _parents(m)}  # importing a module runs its packages
    known = _modules()
    missing = sorted(m for m in allowed if m not in known)
    assert not missing, f"STDLIB_ONLY names modules that do not exist: {missing}"
    violations = []
    for module in sorted(allowed):
        for imp in _imports(known[module]):
            if not imp.module_level:
                continue
            for target in imp.targets():
                if not _is_stdlib(target) and target not in allowed:
                    violations.append(
                        f"{_where(imp)}: {module} is imported by the DAG files at parse time: at module level it may "
                        f"import only the standard library and {', '.join(sorted(STDLIB_ONLY))}"
                    )
    assert not violations, "\n".join(violations)


# --- paths relative to a module ------------------------------------------------------------------------------


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _climb(node: ast.AST, path: Path) -> tuple[Path, int] | None:
    """(the file a `__file__` expression starts from, how many folders up it goes), or None."""
    if isinstance(node, ast.Name) and node.id == "__file__":
        return path, 0
    if isinstance(node, ast.Attribute) and node.attr == "__file__":
        module = _dotted(node.value)
        return (_modules()[module], 0) if module in _modules() else None
    if isinstance(node, ast.Attribute) and node.attr == "parent":
        inner = _climb(node.value, path)
        return (inner[0], inner[1] + 1) if inner else None
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "parents":
        inner = _climb(node.value.value, path)
        index = node.slice.value if isinstance(node.slice, ast.Constant) else None
        if inner is None:
            return None
        return (inner[0], inner[1] + index + 1) if isinstance(index, int) else (inner[0], 99)
    if isinstance(node, ast.Call):
        func = _dotted(node.func) or ""
        if isinstance(node.func, ast.Attribute) and node.func.attr in {"resolve", "absolute"}:
            return _climb(node.func.value, path)
        if node.args and func.rpartition(".")[2] in {"Path", "PurePath", "abspath", "realpath", "normpath"}:
            return _climb(node.args[0], path)
        if node.args and func.endswith("dirname"):
            inner = _climb(node.args[0], path)
            return (inner[0], inner[1] + 1) if inner else None
    return None


def _uses_file(node: ast.AST) -> bool:
    return any(
        (isinstance(n, ast.Name) and n.id == "__file__") or (isinstance(n, ast.Attribute) and n.attr == "__file__")
        for n in ast.walk(node)
    )


def _path_from_file_violations(path: Path) -> Iterator[str]:
    tree, _ = _parse(path)
    own_package = PACKAGE if path.is_relative_to(PACKAGE) else KFP
    for node in ast.walk(tree):
        climbed = _climb(node, path)
        if climbed and climbed[1] > 0:
            start, steps = climbed
            target = start.parents[steps - 1] if steps <= len(start.parents) else Path("/")
            if target != own_package and own_package not in target.parents:
                yield (
                    f"{_rel(path)}:{node.lineno}: `{_code(path, node)}` climbs out of {_rel(own_package)}/ from a "
                    "module's own location: find the checkout with cscnn.project"
                )
        if isinstance(node, ast.stmt) and not hasattr(node, "body"):  # one simple statement
            strings = [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
            if _uses_file(node) and any(s == ".." or "bento" in s or "dags" in s for s in strings):
                yield (
                    f"{_rel(path)}:{node.lineno}: `{_code(path, node)}` builds a path to the checkout from "
                    "`__file__`: find it with cscnn.project"
                )


def test_the_checkout_is_not_found_relative_to_a_module() -> None:
    violations = sorted({v for path in _py_files(PACKAGE, KFP) for v in _path_from_file_violations(path)})
    assert not violations, "\n".join(violations)


# --- the day status ------------------------------------------------------------------------------------------

STATUS_FILE = PACKAGE / "daily" / "status.py"


def _day_status_values() -> dict[str, str]:
    tree, _ = _parse(STATUS_FILE)
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DayStatus"]
    return {
        stmt.value.value: stmt.targets[0].id
        for stmt in cls.body
        if isinstance(stmt, ast.Assign)
        and isinstance(stmt.targets[0], ast.Name)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    }


def test_day_status_values_are_spelled_only_in_the_status_module() -> None:
    values = _day_status_values()
    assert {"promoted", "not_promoted", "rejected", "waiting_for_history"} <= set(values), values
    violations = []
    for path in _py_files(PACKAGE, ROOT / "dags", KFP, ROOT / "bento"):
        if path == STATUS_FILE:
            continue
        tree, _ = _parse(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in values:
                violations.append(f"{_rel(path)}:{node.lineno}: {node.value!r}: use DayStatus.{values[node.value]}")
    assert not violations, "\n".join(violations)


# --- sizes ---------------------------------------------------------------------------------------------------


def _waived(line: str) -> bool:
    return "#" in line and SIZE_WAIVER in line.partition("#")[2]


def test_modules_and_functions_stay_small() -> None:
    offenders = []
    for path in _py_files(PACKAGE, ROOT / "dags", KFP, ROOT / "bento"):
        tree, lines = _parse(path)
        if len(lines) > MAX_MODULE_LINES and not _waived(lines[0]):
            offenders.append(f"{_rel(path)}: {len(lines)} lines (limit {MAX_MODULE_LINES})")
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            length = node.end_lineno - node.lineno + 1
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            before = {lines[i - 2] for i in (node.lineno, first) if i >= 2}
            if length > MAX_FUNCTION_LINES and not any(_waived(line) for line in before):
                offenders.append(
                    f"{_rel(path)}:{node.lineno}: {node.name}() is {length} lines (limit {MAX_FUNCTION_LINES})"
                )
    assert not offenders, (
        f"too long; split it, or put a `# {SIZE_WAIVER} <why>` comment on the line before the def (a module: on "
        "its first line):\n" + "\n".join(offenders)
    )


# --- dependencies --------------------------------------------------------------------------------------------


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(requirements: list[str]) -> set[str]:
    names = {_normalize(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", r.strip()).group()) for r in requirements}
    return names - {"cscnn-ctr"}


def _declared() -> dict[str, set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"base": _requirement_names(project.get("dependencies", []))}
    for group, requirements in project.get("optional-dependencies", {}).items():
        groups[group] = _requirement_names(requirements)
    return groups


def _distribution(dotted: str) -> str:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in IMPORT_TO_DISTRIBUTION:
            return _normalize(IMPORT_TO_DISTRIBUTION[prefix])
    return _normalize(parts[0])


def _allowed_groups(imp: Import, declared: dict[str, set[str]]) -> tuple[str, ...]:
    """Where the distribution of a third-party import may be declared: a lazy import of the library in any
    extra a user installs (never `dev`), the tests' and benchmarks' imports in any group."""
    if imp.path.is_relative_to(ROOT / "tests") or imp.path.is_relative_to(ROOT / "benchmarks"):
        return tuple(declared)
    if imp.path.is_relative_to(PACKAGE):
        layer = _layer(_module_name(imp.path))
        if layer in {"core", "data", "models", "training"} and imp.module_level:
            return ("base",)
        if layer == "serving":
            return ("base", "serve")
        return tuple(group for group in declared if group not in {"dev", "all"})
    if imp.path.is_relative_to(ROOT / "bento"):
        return ("base", "serve")
    return ("base", "pipeline")  # dags/, kfp_pipelines/


def test_every_third_party_import_is_a_declared_dependency() -> None:
    declared = _declared()
    files = [*_py_files(PACKAGE, KFP, ROOT / "dags", ROOT / "tests", ROOT / "benchmarks"), ROOT / "bento/service.py"]
    problems = []
    for path in files:
        for imp in _imports(path):
            if _is_stdlib(imp.module) or _top(imp.module) in FIRST_PARTY or not imp.module:
                continue
            groups = _allowed_groups(imp, declared)
            for dotted in imp.dotted_candidates():
                dist = _distribution(dotted)
                if not any(dist in declared.get(group, set()) for group in groups):
                    where = "base `dependencies`" if groups == ("base",) else "one of " + ", ".join(groups)
                    problems.append(
                        f"{_where(imp)}: distribution {dist!r} is not declared in {where} of pyproject.toml "
                        "(if the distribution has another name than the import, add it to IMPORT_TO_DISTRIBUTION)"
                    )
    assert not problems, "\n".join(sorted(set(problems)))
