"""One lightweight KFP component per step of `cscnn.daily.steps`.

Each component imports inside its body (it runs in its own process: a pod on a cluster, a subprocess
under `kfp.local`) and calls one library function inside `steps.running(<its task name>, ...)`, which records
the step in the day's status and, when it raises, `failed` (`rejected` for a data error) with the error; the
logic lives in the library, never here. Small results travel as parameters, files and decisions as artifacts.
The state folder (`state_dir`: MLflow's SQLite file, the data registry and its versioned world, status files)
is a shared volume on a cluster and a local folder here. Branch conditions come from single return values
(`Output`): kfp.local cannot resolve a condition on a field of a NamedTuple output.
"""

from kfp import dsl
from kfp.dsl import Artifact, Input, Metrics, Model, Output

from cscnn.cluster import IMAGE  # the image the components run in on a cluster; kfp.local uses this venv

component = dsl.component(base_image=IMAGE, install_kfp_package=False)


@component
def validate_day(
    landing: str,
    day: str,
    profile: str,
    overrides: list,
    state_dir: str,
    report: Output[Artifact],
    force_retrain: bool = False,
) -> None:
    """Great Expectations on the day's raw data; fails the run (listing every failed expectation) if bad.
    A day the gate already decided is refused unless `force_retrain`, before anything is recorded."""
    from pathlib import Path

    from cscnn.daily import steps

    steps.refuse_decided(day, state_dir, force_retrain)
    with steps.running("validate-day", day, profile, overrides, state_dir) as (cfg, state):
        steps.validate(Path(landing), day, cfg, state, Path(report.path))


@component
def version_day(
    landing: str, day: str, profile: str, overrides: list, state_dir: str, data_version: Output[Artifact]
) -> bool:
    """DVC: add the day to the data registry, commit the pointers, push. Returns: enough history to train."""
    import json
    from pathlib import Path

    from cscnn.daily import steps

    with steps.running("version-day", day, profile, overrides, state_dir) as (cfg, state):
        version = steps.version(Path(landing), day, cfg, state)
        Path(data_version.path).write_text(json.dumps(version, default=str))
        data_version.metadata.update({"tag": version["tag"], "commit": version["commit"]})
        return bool(version["ready"])


@component
def refresh_embeddings(day: str, profile: str, overrides: list, state_dir: str, table: Output[Artifact]) -> int:
    """New ads get visual vectors from the champion's CNN (GPU node on a cluster). Returns how many."""
    from pathlib import Path

    from cscnn.daily import steps

    with steps.running("refresh-embeddings", day, profile, overrides, state_dir) as (cfg, state):
        return steps.refresh_embeddings(day, cfg, state, Path(table.path))["refreshed"]


@component
def train_candidate(
    day: str, profile: str, overrides: list, state_dir: str, gpus: int, candidate: Output[Model]
) -> None:
    """Train a candidate end to end on the rolling window before `day` (`gpus`: what this task's pod requests)."""
    from pathlib import Path

    from cscnn.daily import steps

    with steps.running("train-candidate", day, profile, overrides, state_dir) as (cfg, state):
        summary = steps.train_candidate(day, cfg, state, Path(candidate.path), pod_gpus=gpus)
        candidate.metadata.update({"fingerprint": summary["fingerprint"], "val_auc": summary["val_auc"]})


@component
def evaluate(
    candidate: Input[Model], day: str, profile: str, overrides: list, state_dir: str, metrics: Output[Metrics]
) -> dict:
    """Candidate and champion on the same held-out day."""
    from pathlib import Path

    from cscnn.daily import steps

    with steps.running("evaluate", day, profile, overrides, state_dir) as (cfg, state):
        result = steps.evaluate(Path(candidate.path), day, cfg, state)
        metrics.log_metric("candidate_auc", result["candidate"]["auc"])
        if "champion" in result:
            metrics.log_metric("champion_auc", result["champion"]["auc"])
        return result


@component
def gate(evaluation: dict, day: str, profile: str, overrides: list, state_dir: str, decision: Output[Artifact]) -> bool:
    """Floor, change against the champion and per-category checks. The decision is printed and saved."""
    import json
    from pathlib import Path

    from cscnn.daily import steps

    with steps.running("gate", day, profile, overrides, state_dir) as (cfg, state):
        result = steps.gate(evaluation, day, cfg, state)
        Path(decision.path).write_text(json.dumps(result, indent=2))
        decision.metadata.update({"passed": result["passed"], "reasons": result["reasons"]})
        return bool(result["passed"])


@component
def register(
    candidate: Input[Model],
    validation: Input[Artifact],
    data_version: Input[Artifact],
    decision: Input[Artifact],
    evaluation: dict,
    day: str,
    profile: str,
    overrides: list,
    state_dir: str,
    work: Output[Artifact],
) -> dict:
    """MLflow run + registered version (alias `challenger`), whatever the gate said."""
    import json
    from pathlib import Path

    from cscnn.daily import steps

    with steps.running("register", day, profile, overrides, state_dir) as (cfg, state):
        return steps.register(
            Path(candidate.path),
            day,
            evaluation,
            json.loads(Path(decision.path).read_text()),
            json.loads(Path(data_version.path).read_text())["tag"],
            Path(validation.path),
            cfg,
            state,
            Path(work.path),
        )


@component
def publish_table(
    ref: dict, candidate: Input[Model], day: str, profile: str, overrides: list, state_dir: str, table: Output[Artifact]
) -> dict:
    """The full embedding table of the new version, logged with it (GPU node on a cluster)."""
    from pathlib import Path

    from cscnn.daily import steps

    with steps.running("publish-table", day, profile, overrides, state_dir) as (cfg, state):
        return steps.publish_table(ref, Path(candidate.path), day, cfg, state, Path(table.path))


@component
def package_service(ref: dict, day: str, profile: str, overrides: list, state_dir: str) -> dict:
    """Build the bento and check the packaged service loads this version and answers a canned request."""
    from cscnn.daily import steps

    with steps.running("package-service", day, profile, overrides, state_dir) as (cfg, state):
        return steps.package(ref, day, cfg, state)


@component
def promote(ref: dict, day: str, profile: str, overrides: list, state_dir: str) -> dict:
    """Move the alias `champion`; the service picks the new version up without a restart."""
    from cscnn.daily import steps

    with steps.running("promote", day, profile, overrides, state_dir) as (cfg, state):
        return steps.promote(ref, day, cfg, state)


@component
def keep_champion(decision: Input[Artifact], day: str, profile: str, overrides: list, state_dir: str) -> dict:
    """The gate said no: record it; `champion` stays where it was."""
    import json
    from pathlib import Path

    from cscnn.daily import steps

    with steps.running("keep-champion", day, profile, overrides, state_dir) as (cfg, state):
        return steps.not_promoted(day, json.loads(Path(decision.path).read_text()), cfg, state)
