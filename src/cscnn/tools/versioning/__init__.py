"""Version each day of data with DVC, in a data registry repository (see `data_registry` for the whole story).

Modules: `data_registry` (the public API: `DataVersion`, `init_registry`, `version_day`, `current_version`,
`restore`, `recover`, `remote_url`, `versioned_days`), `copying` (the day's files into the registry),
`gitdvc` (the low-level git and DVC calls).
"""

from cscnn.tools.versioning.data_registry import (
    DataVersion,
    current_version,
    init_registry,
    recover,
    remote_url,
    restore,
    version_day,
    versioned_days,
)

__all__ = [
    "DataVersion",
    "current_version",
    "init_registry",
    "recover",
    "remote_url",
    "restore",
    "version_day",
    "versioned_days",
]
