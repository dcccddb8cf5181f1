"""The `cscnn` command: one subcommand per workload, each a thin wrapper over one library function.

`modelling` holds the data and model subcommands (and creates the app), `online` the traffic simulator, `ops`
the operational ones (registry, daily runs, pipelines, Airflow, demo), `pictures` the attention picture;
`options` what they share.
"""

from cscnn.entrypoints.cli import online, ops, pictures  # noqa: F401 - register their subcommands on the app
from cscnn.entrypoints.cli.modelling import app

__all__ = ["app"]
