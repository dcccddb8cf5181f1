"""The step chain of the daily loop, written once: every other copy is derived from this table.

One row per step. A step has one name everywhere: its library function (`cscnn.daily.steps.<name>`), its KFP
component (`kfp_pipelines.components.<name>`), its KFP task (`<name>` with hyphens, what the day's record
names in `step`), and the rows of the docs' step table (docs/daily_loop.md, checked against `markdown_table`
by a test). `status_field` is the `DayRecord` field the step fills in; `result` is the type its function
returns (checked against the function's annotation by a test); `retries`, `cpu` and `memory` go on its task in
the compiled pipeline (kfp_pipelines/daily.py `shared`). Standard library only: the DAG files import
the status module at parse time, and the docs test reads this without the tools.
"""

from __future__ import annotations

from dataclasses import dataclass

# The parameters every component takes, in this order after its own: which day, which config, which state.
SHARED_PARAMETERS = ("day", "profile", "overrides", "state_dir")


@dataclass(frozen=True)
class Step:
    name: str  # the function and the component; `task` is the same with hyphens
    library: str  # the library function (below the loop) that does the work
    status_field: str | None  # the `DayRecord` field it fills in (None: only the status or the decision)
    result: str  # the type the step function returns
    branch: str  # when it runs: "always", "enough history", "gate passed", "gate failed"
    gpu: bool  # its task asks for a GPU node on a cluster
    decides: str  # what it decides / records, for the docs' table
    retries: int  # KFP retries on a cluster: 0 where a failure is the answer (a rejected day, a gate's error)
    cpu: str  # the task's CPU request on a cluster (a GPU node's steps are also limited, kfp_pipelines/daily.py)
    memory: str  # the task's memory request on a cluster

    @property
    def task(self) -> str:
        """The KFP task name, which the day's record names as the step that ran or failed."""
        return self.name.replace("_", "-")

    @property
    def function(self) -> str:
        return f"cscnn.daily.steps.{self.name}"

    @property
    def component(self) -> str:
        return f"kfp_pipelines.components.{self.name}"


STEPS: tuple[Step, ...] = (
    Step(
        name="validate",
        library="cscnn.tools.validation.validate_day",
        status_field="validation",
        result="ValidationReport",
        branch="always",
        gpu=False,
        decides="Great Expectations on the landing day (never modified); a failing day is `rejected`, nothing trains",
        retries=0,
        cpu="1",
        memory="2G",
    ),
    Step(
        name="version",
        library="cscnn.tools.versioning.version_day",
        status_field="data_version",
        result="Versioned",
        branch="always",
        gpu=False,
        decides="DVC: the day joins the data registry and is pushed; too little history stops at `waiting_for_history`",
        retries=2,
        cpu="1",
        memory="2G",
    ),
    Step(
        name="refresh_embeddings",
        library="cscnn.training.embed.extend_table",
        status_field="refresh",
        result="RefreshResult",
        branch="enough history",
        gpu=True,
        decides="the champion's CNN embeds the ads its table lacks; the extended table is attached to the champion",
        retries=2,
        cpu="4",
        memory="16G",
    ),
    Step(
        name="train_candidate",
        library="cscnn.training.launch.run_training",
        status_field="candidate",
        result="CandidateSummary",
        branch="enough history",
        gpu=True,
        decides="a candidate on the rolling window before the held-out day (torchrun or a TrainJob)",
        retries=1,
        cpu="4",
        memory="16G",
    ),
    Step(
        name="evaluate",
        library="cscnn.training.evaluate.evaluate_checkpoint",
        status_field="evaluation",
        result="Evaluation",
        branch="enough history",
        gpu=False,
        decides="candidate and champion on the same held-out day: AUC, logloss, per-category and cold-start AUC",
        retries=2,
        cpu="2",
        memory="4G",
    ),
    Step(
        name="gate",
        library="cscnn.tools.gate.decide",
        status_field="gate",
        result="GateDecision",
        branch="enough history",
        gpu=False,
        decides="AUC floor, no large drop against the champion, no large per-category drop",
        retries=0,
        cpu="500m",
        memory="1G",
    ),
    Step(
        name="register",
        library="cscnn.tools.model_registry.log_candidate",
        status_field="candidate_version",
        result="ModelRef",
        branch="enough history",
        gpu=False,
        decides="one MLflow run and a registered version with the alias `challenger`, whatever the gate said",
        retries=2,
        cpu="1",
        memory="4G",
    ),
    Step(
        name="publish_table",
        library="cscnn.training.embed.export_table",
        status_field=None,
        result="ModelRef",
        branch="gate passed",
        gpu=True,
        decides="the new CNN embeds the whole catalogue; the table is logged with the version",
        retries=2,
        cpu="4",
        memory="16G",
    ),
    Step(
        name="package",
        library="cscnn.tools.packaging.build_bento",
        status_field="package",
        result="PackageResult",
        branch="gate passed",
        gpu=False,
        decides="the ranking service's bento is built and served with this version, and must answer a canned request",
        retries=2,
        cpu="2",
        memory="4G",
    ),
    Step(
        name="promote",
        library="cscnn.tools.model_registry.promote",
        status_field="champion",
        result="Promotion",
        branch="gate passed",
        gpu=False,
        decides="the alias `champion` moves (status `promoted`); the running service picks it up without downtime",
        retries=2,
        cpu="500m",
        memory="1G",
    ),
    Step(
        name="keep_champion",
        library="cscnn.tools.model_registry.resolve",
        status_field="champion",
        result="KeptChampion",
        branch="gate failed",
        gpu=False,
        decides="the gate said no: status `not_promoted`, `champion` stays where it was",
        retries=2,
        cpu="500m",
        memory="1G",
    ),
)

STEP = {step.name: step for step in STEPS}
TASKS = frozenset(step.task for step in STEPS)


def markdown_table() -> str:
    """The docs' step table (docs/daily_loop.md holds this text between its markers; a test compares them)."""
    rows = [
        "| step (KFP task) | when | library | day record field | result | what it decides / records |",
        "|---|---|---|---|---|---|",
    ]
    for s in STEPS:
        where = f"{s.branch}, GPU node" if s.gpu else s.branch
        field = f"`{s.status_field}`" if s.status_field else "-"
        rows.append(f"| `{s.task}` | {where} | `{s.library}` | {field} | `{s.result}` | {s.decides} |")
    return "\n".join(rows)
