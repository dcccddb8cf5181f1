"""The run settings spelled once: the default profile, the profiles there are, and the environment variables.

Standard library only (the DAG files import it at parse time through `cscnn.entrypoints.orchestration`).
`PROFILES` lists the profiles of `cscnn/profiles.yaml`, the one config source, in its order; a test fails when
they disagree, so the CLI's help, the DAG's param and the docs name them from here. `ENVIRONMENT` lists every
`CSCNN_*` variable the project reads, with its default, type and meaning; docs/settings.md shows it
(`environment_table`), and a test fails when a variable is read that the table lacks, or the docs differ.
`read(name)` is the one place the project reads them (tests/unit/test_architecture.py fails on a read elsewhere):
typed as the table says, with the table's fallback when unset, and a ConfigError naming the variable when its
value is not of its type.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from cscnn.errors import ConfigError

DEFAULT_PROFILE = "small"  # the profile a run uses when none is given: Make, the CLI, the DAGs, the pipelines
PROFILES = ("tiny", "small", "demo", "bench", "capacity", "regions")  # cscnn/profiles.yaml, in its order


def profile_list() -> str:
    """`tiny, small (default), demo, ...`: how help texts name the profiles."""
    return ", ".join(f"{name} (default)" if name == DEFAULT_PROFILE else name for name in PROFILES)


@dataclass(frozen=True)
class Variable:
    name: str
    default: str  # as the docs show it: a value, or what happens when it is unset
    meaning: str
    read_by: str  # the module that reads it
    kind: type = str  # str, int or float: what `read` returns
    fallback: str | int | float | None = None  # what `read` returns when the variable is unset or empty


ENVIRONMENT: tuple[Variable, ...] = (
    Variable(
        "CSCNN_STATE", "`./.state`", "the state folder: MLflow's SQLite file, data registry, records", "cscnn.state"
    ),
    Variable("CSCNN_DVC_REMOTE", "`<state>/dvc-remote`", "the DVC remote (a folder or object storage)", "cscnn.state"),
    Variable(
        "CSCNN_DATA_REGISTRY_REMOTE",
        "unset",
        "the data registry's git remote; set: cluster mode (no shared folder between steps)",
        "cscnn.state",
    ),
    Variable("CSCNN_STATUS_STORE", "`file` (`mlflow` in cluster mode)", "where day records live", "cscnn.state"),
    Variable(
        "CSCNN_LOCK_WAIT",
        "3600",
        "seconds a run waits for another run on the same state (0: fail at once)",
        "cscnn.locks",
        float,
        3600.0,
    ),
    Variable("CSCNN_PROJECT_ROOT", "the install record", "the checkout (its `dags/`, `bento/`)", "cscnn.project"),
    Variable(
        "CSCNN_LANDING",
        "what `make demo` recorded, else `data/small`",
        "the landing folder of the DAGs",
        "cscnn.entrypoints.orchestration",
    ),
    Variable(
        "CSCNN_PROFILE",
        f"`{DEFAULT_PROFILE}`",
        "the config profile of the DAGs and the service",
        "cscnn.entrypoints.orchestration, cscnn.serving.sources",
    ),
    Variable("CSCNN_CONFIG", "unset", "a YAML file over the service's profile", "cscnn.serving.sources"),
    Variable(
        "CSCNN_SET", "unset", "the service's `section.key=value` overrides, space-separated", "cscnn.serving.sources"
    ),
    Variable("CSCNN_PIPELINE_RETRIES", "2", "retries of the DAGs' pipeline task (read at parse time)", "dags/", int, 2),
    Variable(
        "CSCNN_LANDING_WAIT_S",
        "21600 (6 h)",
        "how long the daily DAG's sensor waits for the day to land (read at parse time; 0: fail at once)",
        "dags/",
        int,
        6 * 3600,
    ),
    Variable(
        "CSCNN_ALERT_WEBHOOK",
        "unset (a log line only)",
        "a URL the DAGs' failure hook POSTs each alert to as JSON",
        "cscnn.entrypoints.notify",
    ),
    Variable("CSCNN_NAMESPACE", "the pod's namespace", "the Kubernetes namespace of TrainJobs", "cscnn.tools.trainjob"),
    Variable(
        "CSCNN_MODEL_ALIAS", "`champion`", "the alias the service follows", "cscnn.serving.sources", str, "champion"
    ),
    Variable(
        "CSCNN_MODEL_VERSION",
        "unset",
        "serve this registry version (the package step's smoke check)",
        "cscnn.serving.sources",
    ),
    Variable("CSCNN_MODEL_DIR", "unset", "serve a local checkpoint instead of the registry", "cscnn.serving.sources"),
    Variable(
        "CSCNN_TABLE_DIR", "unset", "the local embedding table served with `CSCNN_MODEL_DIR`", "cscnn.serving.sources"
    ),
    Variable(
        "CSCNN_CATALOG", "`<table>/catalog.parquet`", "another catalogue file for the service", "cscnn.serving.sources"
    ),
    Variable("CSCNN_IMAGES_DIR", "unset", "benchmark only: the CNN per request", "cscnn.serving.sources"),
    Variable("CSCNN_ADMIN_TOKEN", "unset (403)", "the bearer token of `POST /admin/reload`", "cscnn.serving.security"),
    Variable("CSCNN_SERVE_WORKERS", "1", "the service's worker processes", "bento/service.py", int, 1),
    Variable("CSCNN_TORCH_THREADS", "1", "torch threads per service worker", "bento/service.py", int, 1),
)


VARIABLES = {v.name: v for v in ENVIRONMENT}


def read(name: str, environ: Mapping[str, str] | None = None) -> str | int | float | None:
    """The value of `name` in `environ` (default: this process's environment), stripped and typed as
    `ENVIRONMENT` says; the variable's fallback when unset or empty. A number that is not one, or is negative,
    raises ConfigError naming the variable; a name the table lacks raises KeyError (a programming error)."""
    variable = VARIABLES[name]
    text = (os.environ if environ is None else environ).get(name, "").strip()
    if not text:
        return variable.fallback
    if variable.kind is str:
        return text
    try:
        value = variable.kind(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(f"{name}={text!r}: expected a {'whole ' if variable.kind is int else ''}number >= 0")
    return value


def environment_table() -> str:
    """docs/settings.md's table of the environment variables (a test compares them)."""
    rows = ["| variable | default | type | meaning | read by |", "|---|---|---|---|---|"]
    rows += [
        f"| `{v.name}` | {v.default} | {'number' if v.kind is not str else 'text'} | {v.meaning} | `{v.read_by}` |"
        for v in ENVIRONMENT
    ]
    return "\n".join(rows)
