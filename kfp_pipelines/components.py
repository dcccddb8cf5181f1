"""One lightweight KFP component per step of `cscnn.daily`.

Each component imports inside its body (it runs in its own process: a pod on a cluster, a subprocess
under `kfp.local`) and calls one library function; the logic lives in the library, never here. Small
results travel as parameters, model files as artifacts; the state folder (`state_dir`: MLflow's SQLite
file, the data registry, status files) is a shared volume on a cluster and a local folder here.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Metrics, Model, Output

# The image the components run in on a cluster (infra/Dockerfile); kfp.local runs them in this venv.
IMAGE = "ghcr.io/cscnn-ctr/cscnn-ctr:0.1.0"
component = dsl.component(base_image=IMAGE, install_kfp_package=False)


@component
def validate_day(
    landing: str, day: str, profile: str, overrides: list, state_dir: str, report: Output[Artifact]
) -> None:
    """Great Expectations on the day's raw data; fails the run (listing every failed expectation) if bad."""
    from pathlib import Path

    from cscnn import daily

    cfg, state = daily.context(profile, overrides, state_dir)
    daily.validate(Path(landing), day, cfg, state, Path(report.path))


@component
def version_day(landing: str, day: str, state_dir: str) -> NamedTuple("DataVersion", world_dir=str, tag=str):
    """DVC: add the day to the data registry, commit the pointers, push to the remote."""
    from collections import namedtuple

    from cscnn import daily

    state = daily.context("small", [], state_dir)[1]
    version = daily.version(landing, day, state)
    return namedtuple("DataVersion", ["world_dir", "tag"])(str(version["world_dir"]), version["tag"])


@component
def refresh_embeddings(
    world_dir: str, day: str, profile: str, overrides: list, state_dir: str, table: Output[Artifact]
) -> int:
    """New ads get visual vectors from the champion's CNN (GPU node on a cluster). Returns how many."""
    from pathlib import Path

    from cscnn import daily

    cfg, state = daily.context(profile, overrides, state_dir)
    return daily.refresh_embeddings(Path(world_dir), day, cfg, state, Path(table.path))["refreshed"]


@component
def train_candidate(
    world_dir: str, day: str, profile: str, overrides: list, state_dir: str, candidate: Output[Model]
) -> None:
    """Train a candidate end to end on the rolling window before `day`."""
    from pathlib import Path

    from cscnn import daily

    cfg, state = daily.context(profile, overrides, state_dir)
    summary = daily.train_candidate(Path(world_dir), day, cfg, state, Path(candidate.path))
    candidate.metadata.update({"fingerprint": summary["fingerprint"], "val_auc": summary["val_auc"]})


@component
def evaluate(
    candidate: Input[Model],
    world_dir: str,
    day: str,
    profile: str,
    overrides: list,
    state_dir: str,
    metrics: Output[Metrics],
) -> dict:
    """Candidate and champion on the same held-out day."""
    from pathlib import Path

    from cscnn import daily

    cfg, state = daily.context(profile, overrides, state_dir)
    result = daily.evaluate(Path(candidate.path), Path(world_dir), day, cfg, state)
    metrics.log_metric("candidate_auc", result["candidate"]["auc"])
    if result["champion"] is not None:
        metrics.log_metric("champion_auc", result["champion"]["auc"])
    return result


@component
def gate(evaluation: dict, day: str, profile: str, overrides: list, state_dir: str) -> NamedTuple(
    "Gate", passed=bool, decision=dict
):
    """Floor, change against the champion and per-category checks; the decision is printed and saved."""
    from collections import namedtuple

    from cscnn import daily

    cfg, state = daily.context(profile, overrides, state_dir)
    decision = daily.gate(evaluation, day, cfg, state)
    return namedtuple("Gate", ["passed", "decision"])(decision["passed"], decision)


@component
def register(
    candidate: Input[Model],
    validation: Input[Artifact],
    world_dir: str,
    day: str,
    evaluation: dict,
    decision: dict,
    data_version: str,
    profile: str,
    overrides: list,
    state_dir: str,
    work: Output[Artifact],
) -> dict:
    """MLflow run + registered version (alias `challenger`), whatever the gate said."""
    from pathlib import Path

    from cscnn import daily

    cfg, state = daily.context(profile, overrides, state_dir)
    return daily.register(
        Path(candidate.path),
        Path(world_dir),
        day,
        evaluation,
        decision,
        data_version,
        Path(validation.path),
        cfg,
        state,
        Path(work.path),
    )


@component
def publish_table(
    ref: dict,
    candidate: Input[Model],
    world_dir: str,
    day: str,
    profile: str,
    overrides: list,
    state_dir: str,
    table: Output[Artifact],
) -> dict:
    """The full embedding table of the new version, logged with it (GPU node on a cluster)."""
    from pathlib import Path

    from cscnn import daily

    cfg, state = daily.context(profile, overrides, state_dir)
    return daily.publish_table(ref, Path(candidate.path), Path(world_dir), day, cfg, state, Path(table.path))


@component
def package_service(ref: dict, day: str, profile: str, overrides: list, state_dir: str) -> dict:
    """Build the bento and check the packaged service loads this version and answers a canned request."""
    from cscnn import daily

    cfg, state = daily.context(profile, overrides, state_dir)
    return daily.package(ref, day, cfg, state)


@component
def promote(ref: dict, day: str, state_dir: str) -> dict:
    """Move the alias `champion`; the service picks the new version up without a restart."""
    from cscnn import daily

    state = daily.context("small", [], state_dir)[1]
    return daily.promote(ref, day, state)


@component
def keep_champion(decision: dict, day: str, state_dir: str) -> dict:
    """The gate said no: record it; `champion` stays where it was."""
    from cscnn import daily

    state = daily.context("small", [], state_dir)[1]
    return daily.not_promoted(day, decision, state)
