"""The `cscnn` command: one subcommand per workload, each a thin wrapper over one library function.

`modelling` holds the data and model subcommands (and creates the app), `ops` the operational ones (registry,
daily runs, pipelines, Airflow, demo); `options` what they share.
"""

from cscnn.entrypoints.cli import ops  # noqa: F401 - registers the operational subcommands on the app
from cscnn.entrypoints.cli.modelling import app

__all__ = ["app"]
