"""The step table (`cscnn.daily.chain`) is the one source of the loop's names: the functions, the components,
the task names, the record fields, the result types and the docs' table all agree with it."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
import typing
from collections import Counter
from pathlib import Path

from cscnn.daily import chain, steps, tasks
from cscnn.daily.status import DayRecord
from kfp_pipelines import components

ROOT = Path(__file__).resolve().parents[2]
DAILY_LOOP_DOC = ROOT / "docs" / "daily_loop.md"
TABLE_START, TABLE_END = "<!-- step table: generated from cscnn.daily.chain -->", "<!-- end of step table -->"


def test_every_step_has_a_function_a_component_and_a_task_body_of_its_name():
    names = [s.name for s in chain.STEPS]
    assert len(set(names)) == len(names)
    for name in names:
        module, _, attribute = chain.STEP[name].function.rpartition(".")
        assert callable(getattr(importlib.import_module(module), attribute)), name
        module, _, attribute = chain.STEP[name].component.rpartition(".")
        assert getattr(importlib.import_module(module), attribute) is getattr(components, name)
        assert getattr(components, name).name == chain.STEP[name].task, name  # KFP names the task so
    assert set(tasks._BODIES) == set(names)
    kfp_components = {
        n for n, v in vars(components).items() if hasattr(v, "pipeline_func") or hasattr(v, "python_func")
    }
    assert kfp_components == set(names)


def test_each_step_returns_its_result_type_and_none_returns_a_dict():
    for step in chain.STEPS:
        hints = typing.get_type_hints(getattr(steps, step.name), vars(steps) | _result_types())
        returned = hints["return"]
        assert returned.__name__ == step.result, (step.name, returned)
        assert returned is not dict and dataclasses.is_dataclass(returned), step.name


def _result_types() -> dict[str, type]:
    from cscnn.tools.gate import GateDecision
    from cscnn.tools.model_registry import ModelRef
    from cscnn.tools.validation import ValidationReport

    return {"GateDecision": GateDecision, "ModelRef": ModelRef, "ValidationReport": ValidationReport}


def test_status_fields_are_fields_of_the_day_record():
    fields = {f.name for f in dataclasses.fields(DayRecord)}
    for step in chain.STEPS:
        assert step.status_field is None or step.status_field in fields, step.name


def test_every_component_takes_the_shared_parameters_and_has_the_one_body():
    """The signature is all a component writes; its body hands its arguments to `tasks.run`."""
    for step in chain.STEPS:
        func = getattr(components, step.name).python_func
        parameters = list(inspect.signature(func).parameters)
        start = parameters.index(chain.SHARED_PARAMETERS[0])
        assert tuple(parameters[start : start + 4]) == chain.SHARED_PARAMETERS, step.name
        body = ast.parse(inspect.getsource(func)).body[0].body
        statements = [ast.unparse(node) for node in body if not _is_docstring(node)]
        call = f"tasks.run('{step.name}', arguments)"
        assert statements == ["arguments = dict(locals())", "from cscnn.daily import tasks", statements[-1]], step.name
        assert statements[-1] in (call, f"return {call}"), step.name


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)


def test_the_docs_step_table_is_the_generated_one():
    text = DAILY_LOOP_DOC.read_text()
    assert TABLE_START in text and TABLE_END in text, f"{DAILY_LOOP_DOC}: the step table's markers are missing"
    shown = text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0].strip()
    assert shown == chain.markdown_table(), (
        "docs/daily_loop.md's step table differs from cscnn.daily.chain: paste `chain.markdown_table()` between "
        "its markers"
    )


def test_no_two_modules_of_the_library_share_a_file_name():
    names = Counter(p.name for p in (ROOT / "src" / "cscnn").rglob("*.py") if p.name != "__init__.py")
    assert [name for name, count in names.items() if count > 1] == []


def test_the_readme_figure_names_every_step_in_the_table_order():
    text = (ROOT / "README.md").read_text().split("## The daily loop", 1)[1]
    figure = text.split("```", 2)[1]
    positions = [re.search(rf"(?<![\w-]){re.escape(s.task)}(?![\w-])", figure) for s in chain.STEPS]
    assert all(positions), [s.task for s, p in zip(chain.STEPS, positions, strict=True) if not p]
    starts = [p.start() for p in positions]
    assert starts == sorted(starts), "README.md's figure of the loop names the steps out of the table's order"


def test_the_profile_list_is_the_profiles_file():
    from importlib import resources

    import yaml

    from cscnn import settings

    profiles = yaml.safe_load(resources.files("cscnn").joinpath("profiles.yaml").read_text())
    assert tuple(profiles) == settings.PROFILES
    assert settings.DEFAULT_PROFILE in settings.PROFILES


def test_every_environment_variable_read_is_in_the_settings_table_and_its_docs():
    from cscnn import settings

    names = {v.name for v in settings.ENVIRONMENT}
    read = set()
    for folder in ("src", "dags", "bento", "kfp_pipelines"):
        for path in (ROOT / folder).rglob("*.py"):
            read |= set(re.findall(r"\bCSCNN_[A-Z_]+\b", path.read_text()))
    assert read <= names, sorted(read - names)
    text = (ROOT / "docs" / "settings.md").read_text()
    start, end = "<!-- environment table: generated from cscnn.settings -->", "<!-- end of environment table -->"
    assert text.split(start, 1)[1].split(end, 1)[0].strip() == settings.environment_table()


def _environment_reads(tree: ast.Module) -> list[str]:
    """The `CSCNN_*` names a module reads itself: `x.get(NAME)`, `getenv(NAME)`, `x.pop(NAME)`, `x[NAME]` (load) and
    `NAME in x`, where NAME is the literal or a module-level constant bound to it. Writes (a child's environment)
    are not reads."""
    constants = {
        node.targets[0].id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }

    def name_of(node: ast.AST) -> str | None:
        value = node.value if isinstance(node, ast.Constant) else constants.get(getattr(node, "id", None))
        return value if isinstance(value, str) and value.startswith("CSCNN_") else None

    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and node.args
            and getattr(node.func, "attr", getattr(node.func, "id", ""))
            in (
                "get",
                "getenv",
                "pop",
            )
        ):
            found.append(name_of(node.args[0]))
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            found.append(name_of(node.slice))
        elif isinstance(node, ast.Compare) and any(isinstance(op, ast.In | ast.NotIn) for op in node.ops):
            found.append(name_of(node.left))
    return [name for name in found if name]


def test_only_the_settings_module_reads_the_environment_variables():
    """Issue 22, item 4: every `CSCNN_*` variable is read through `cscnn.settings.read`, typed by its table."""
    readers = {}
    for folder in ("src", "dags", "bento", "kfp_pipelines"):
        for path in (ROOT / folder).rglob("*.py"):
            names = _environment_reads(ast.parse(path.read_text()))
            if names and path != ROOT / "src" / "cscnn" / "settings.py":
                readers[str(path.relative_to(ROOT))] = names
    assert not readers, readers
    # and the check sees a read: a module that reads one itself is caught
    assert _environment_reads(ast.parse('import os\nW = "CSCNN_LOCK_WAIT"\nos.environ.get(W)\n')) == ["CSCNN_LOCK_WAIT"]


def test_settings_read_types_the_values_and_names_a_bad_one():
    import pytest

    from cscnn import settings
    from cscnn.errors import ConfigError

    assert settings.read("CSCNN_LOCK_WAIT", {}) == 3600.0
    assert settings.read("CSCNN_PIPELINE_RETRIES", {"CSCNN_PIPELINE_RETRIES": " 0 "}) == 0
    assert settings.read("CSCNN_MODEL_ALIAS", {"CSCNN_MODEL_ALIAS": ""}) == "champion"
    assert settings.read("CSCNN_STATE", {}) is None
    for bad in ("soon", "-1", "2.5"):
        with pytest.raises(ConfigError, match="CSCNN_SERVE_WORKERS="):
            settings.read("CSCNN_SERVE_WORKERS", {"CSCNN_SERVE_WORKERS": bad})
