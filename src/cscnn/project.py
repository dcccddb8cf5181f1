"""Where the project's checkout is: the folder that holds `bento/` and `dags/` next to `src/`.

The library lives in `src/cscnn`; the ranking service's build context (`bento/`) and the DAG folder (`dags/`)
are top-level folders of the checkout, not part of the package. They are found the way pip records an
install: `$CSCNN_PROJECT_ROOT` if set, else the source folder of the installed `cscnn-ctr` distribution
(PEP 610 `direct_url.json`, written by `pip install -e .` and by `pip install .` from a checkout, as the
container image does). Nothing here computes a path from this file's own location.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

from cscnn import settings
from cscnn.errors import ConfigError

DISTRIBUTION = "cscnn-ctr"
ENV_VAR = "CSCNN_PROJECT_ROOT"


def root() -> Path:
    """The project checkout; raises ConfigError naming the fix when it cannot be found."""
    chosen = settings.read(ENV_VAR)
    if chosen:
        path = Path(chosen).resolve()
        if not path.is_dir():
            raise ConfigError(f"${ENV_VAR}={chosen!r} is not a folder")
        return path
    path = _installed_from()
    if path is None or not (path / "pyproject.toml").is_file():
        raise ConfigError(
            f"cannot find the cscnn-ctr checkout (bento/, dags/): install it from a checkout with "
            f"`pip install -e .`, or set ${ENV_VAR}"
        )
    return path


def _installed_from() -> Path | None:
    # Several records can be on the path (a build's `*.egg-info` in the checkout itself): the installed one
    # is the one with `direct_url.json`.
    for dist in metadata.distributions(name=DISTRIBUTION):
        text = dist.read_text("direct_url.json")
        if text:
            url = urlparse(json.loads(text).get("url", ""))
            if url.scheme == "file":
                return Path(unquote(url.path)).resolve()
    return None


def bento_dir() -> Path:
    return root() / "bento"


def dags_dir() -> Path:
    return root() / "dags"
