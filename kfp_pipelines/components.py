"""One lightweight KFP component per step of the daily loop (`cscnn.daily.chain.STEPS`, same names).

A component is its typed signature only: KFP compiles the signature into the pipeline's interface, and each
component runs in its own process (a pod on a cluster, a subprocess under `kfp.local`), so its body imports
inside and hands its arguments to `cscnn.daily.tasks.run(<its step>, ...)`, the one body of every component:
it runs the step inside `tasks.running(<its task name>, ...)`, which records the step in the day's status and,
when it raises, `failed` (`rejected` for a data error) with the error. Every component takes the shared
parameters `chain.SHARED_PARAMETERS` (day, profile, overrides, state_dir) after its own; the logic lives in
the library, never here (tests/unit/test_step_chain.py checks both). Small results travel as parameters, files and
decisions as artifacts. The state folder (`state_dir`: MLflow's SQLite file, the data registry and its
versioned world, status files) is a shared volume on a cluster and a local folder here. Branch conditions
come from single return values (`Output`): kfp.local cannot resolve a condition on a field of a NamedTuple
output.
"""

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Input, Markdown, Metrics, Model, Output

from cscnn.cluster import IMAGE  # the image the components run in on a cluster; kfp.local uses this venv

component = dsl.component(base_image=IMAGE, install_kfp_package=False)


@component
def validate(
    landing: str,
    day: str,
    profile: str,
    overrides: list,
    state_dir: str,
    report: Output[Artifact],
    summary: Output[HTML],
    force_retrain: bool = False,
) -> None:
    """Great Expectations on the day's raw data; fails the run (listing every failed expectation) if bad.
    A day the gate already decided is refused unless `force_retrain`, before anything is recorded.
    `summary`: the report as one HTML page for the KFP UI; `report`: the results and GX's data docs."""
    arguments = dict(locals())
    from cscnn.daily import tasks

    tasks.run("validate", arguments)


@component
def version(
    landing: str, day: str, profile: str, overrides: list, state_dir: str, data_version: Output[Artifact]
) -> bool:
    """DVC: add the day to the data registry, commit the pointers, push. Returns: enough history to train."""
    arguments = dict(locals())
    from cscnn.daily import tasks

    return tasks.run("version", arguments)


@component
def refresh_embeddings(day: str, profile: str, overrides: list, state_dir: str, table: Output[Artifact]) -> int:
    """New ads get visual vectors from the champion's CNN (GPU node on a cluster). Returns how many."""
    arguments = dict(locals())
    from cscnn.daily import tasks

    return tasks.run("refresh_embeddings", arguments)


@component
def train_candidate(
    gpus: int, day: str, profile: str, overrides: list, state_dir: str, candidate: Output[Model]
) -> None:
    """Train a candidate end to end on the rolling window before `day` (`gpus`: what this task's pod requests)."""
    arguments = dict(locals())
    from cscnn.daily import tasks

    tasks.run("train_candidate", arguments)


@component
def evaluate(
    candidate: Input[Model], day: str, profile: str, overrides: list, state_dir: str, metrics: Output[Metrics]
) -> dict:
    """Candidate and champion on the same held-out day (`cscnn.daily.results.Evaluation`)."""
    arguments = dict(locals())
    from cscnn.daily import tasks

    return tasks.run("evaluate", arguments)


@component
def gate(
    evaluation: dict,
    day: str,
    profile: str,
    overrides: list,
    state_dir: str,
    decision: Output[Artifact],
    summary: Output[Markdown],
) -> bool:
    """Floor, change against the champion and per-category checks. The decision is printed and saved (JSON),
    and shown in the KFP UI as a Markdown table (`summary`)."""
    arguments = dict(locals())
    from cscnn.daily import tasks

    return tasks.run("gate", arguments)


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
    roc: Output[ClassificationMetrics],
) -> dict:
    """MLflow run + registered version (alias `challenger`), whatever the gate said. `roc`: the candidate's ROC
    on the held-out day, for the KFP UI."""
    arguments = dict(locals())
    from cscnn.daily import tasks

    return tasks.run("register", arguments)


@component
def publish_table(
    ref: dict, candidate: Input[Model], day: str, profile: str, overrides: list, state_dir: str, table: Output[Artifact]
) -> dict:
    """The full embedding table of the new version, logged with it (GPU node on a cluster)."""
    arguments = dict(locals())
    from cscnn.daily import tasks

    return tasks.run("publish_table", arguments)


@component
def package(ref: dict, day: str, profile: str, overrides: list, state_dir: str) -> dict:
    """Build the bento and check the packaged service loads this version and answers a canned request."""
    arguments = dict(locals())
    from cscnn.daily import tasks

    return tasks.run("package", arguments)


@component
def promote(ref: dict, day: str, profile: str, overrides: list, state_dir: str) -> dict:
    """Move the alias `champion`; the service picks the new version up without a restart."""
    arguments = dict(locals())
    from cscnn.daily import tasks

    return tasks.run("promote", arguments)


@component
def keep_champion(decision: Input[Artifact], day: str, profile: str, overrides: list, state_dir: str) -> dict:
    """The gate said no: record it; `champion` stays where it was."""
    arguments = dict(locals())
    from cscnn.daily import tasks

    return tasks.run("keep_champion", arguments)
