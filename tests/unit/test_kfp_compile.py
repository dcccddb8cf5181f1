"""Golden-file test: the committed pipeline YAML must match what the code compiles to."""

from pathlib import Path

import yaml

from cscnn.cluster import CONFIG_ENV, REMOTES_SECRET, REMOTES_SECRET_ENV
from cscnn.daily.chain import STEP, STEPS, TASKS
from kfp_pipelines.daily import PIPELINES
from kfp_pipelines.runner import COMPILED_DIR, compile_all


def _spec(path: Path) -> list:
    return list(yaml.safe_load_all(path.read_text()))


def _without_sdk_version(docs: list) -> list:
    """The SDK stamps its version into the IR; like KFP's own read/write tests, a patch release of kfp that
    compiles the same pipeline is not a change."""
    return [{k: v for k, v in doc.items() if k != "sdkVersion"} if isinstance(doc, dict) else doc for doc in docs]


def test_compiled_yaml_is_up_to_date(tmp_path):
    fresh = compile_all(tmp_path)
    assert {p.name for p in fresh} == {f"{name}.yaml" for name in PIPELINES}
    for path in fresh:
        committed = COMPILED_DIR / path.name
        assert committed.is_file(), f"{committed} missing: run `cscnn pipeline compile`"
        assert _without_sdk_version(_spec(path)) == _without_sdk_version(_spec(committed)), (
            f"{committed.name} is stale: the pipeline changed; run `cscnn pipeline compile` and commit the YAML"
        )


def test_gpu_request_node_selector_and_toleration_are_compiled_in():
    docs = _spec(COMPILED_DIR / "daily.yaml")
    text = (COMPILED_DIR / "daily.yaml").read_text()
    executors = docs[0]["deploymentSpec"]["executors"]
    gpu = [name for name, ex in executors.items() if "accelerator" in ex["container"].get("resources", {})]
    assert sorted(gpu) == sorted(f"exec-{s.task}" for s in STEPS if s.gpu)
    train_gpus = executors[f"exec-{STEP['train_candidate'].task}"]["container"]["resources"]["accelerator"][
        "resourceCount"
    ]
    assert "train_gpus" in train_gpus  # the pipeline parameter, set per run (one node: = train.workers)
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name in gpu:
        assert platform[name]["nodeSelector"]["labels"]
        assert platform[name]["tolerations"][0]["effect"] == "NoSchedule"
    assert "gate-passed" in text


def test_training_waits_for_history_and_promotion_for_the_gate():
    spec = _spec(COMPILED_DIR / "daily.yaml")[0]
    root = spec["root"]["dag"]["tasks"]
    validate, version = STEP["validate"].task, STEP["version"].task
    assert {validate, version} <= set(root)
    assert version in root[next(n for n in root if n.startswith("condition-"))]["dependentTasks"]
    conditions = {}
    for comp in [spec["root"], *spec["components"].values()]:
        for name, task in comp.get("dag", {}).get("tasks", {}).items():
            conditions[name] = task.get("triggerPolicy", {}).get("condition")
    assert conditions["condition-1"] == f"inputs.parameter_values['pipelinechannel--{version}-Output'] == true"
    gate_branches = [c for c in conditions.values() if c and "gate-Output" in c]
    assert len(gate_branches) == 2  # gate passed / gate failed
    passed_branch = next(
        comp["dag"]["tasks"]
        for comp in spec["components"].values()
        if "promote" in comp.get("dag", {}).get("tasks", {})
    )
    assert set(passed_branch) == {s.task for s in STEPS if s.branch == "gate passed"}
    assert set(passed_branch["promote"]["dependentTasks"]) >= {STEP["package"].task}


def test_every_step_mounts_the_shared_state_and_reads_the_tool_endpoints():
    for name in PIPELINES:
        docs = _spec(COMPILED_DIR / f"{name}.yaml")
        executors = docs[0]["deploymentSpec"]["executors"]
        platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        assert set(platform) == set(executors), name
        for executor, spec in platform.items():
            assert spec["pvcMount"][0]["mountPath"] == "/var/lib/cscnn/state", executor
            keys = {item["envVar"] for item in spec["configMapAsEnv"][0]["keyToEnv"]}
            assert keys == set(CONFIG_ENV) >= {"MLFLOW_TRACKING_URI", "CSCNN_DVC_REMOTE"}, executor
            secret = spec["secretAsEnv"][0]  # the remotes' credentials (infra/README.md "Cluster mode")
            assert secret["secretName"] == REMOTES_SECRET and secret["optional"] is True, executor
            assert {item["envVar"] for item in secret["keyToEnv"]} == set(REMOTES_SECRET_ENV), executor


def _tasks(spec: dict) -> dict[str, dict]:
    """Every task of the pipeline, inside conditions too."""
    return {
        name: task
        for comp in [spec["root"], *spec["components"].values()]
        for name, task in comp.get("dag", {}).get("tasks", {}).items()
    }


def test_no_task_is_cached_on_a_backend():
    """Every step writes outside its outputs (record, registry, MLflow, bento store): a cached task on a KFP
    backend would return the stored outputs and write nothing (kfp_pipelines/README.md "Caching")."""
    steps = {"daily": TASKS, "embedding_refresh": {STEP[s].task for s in ("validate", "version", "refresh_embeddings")}}
    for name, expected in steps.items():
        tasks = _tasks(_spec(COMPILED_DIR / f"{name}.yaml")[0])
        components = {n for n in tasks if not n.startswith("condition-")}
        assert components == expected, (name, sorted(components))
        for task_name, task in tasks.items():
            assert task.get("cachingOptions", {}).get("enableCache") is not True, (name, task_name)


def test_force_retrain_is_a_pipeline_parameter_the_first_step_reads():
    spec = _spec(COMPILED_DIR / "daily.yaml")[0]
    parameter = spec["root"]["inputDefinitions"]["parameters"]["force_retrain"]
    assert parameter["parameterType"] == "BOOLEAN" and parameter["defaultValue"] is False
    validate = spec["root"]["dag"]["tasks"][STEP["validate"].task]["inputs"]["parameters"]
    assert validate["force_retrain"] == {"componentInputParameter": "force_retrain"}


def test_every_task_requests_its_steps_cpu_and_memory_and_retries_as_its_row_says():
    """The step table's `cpu`, `memory` and `retries` are what a cluster gets: requests on every executor, a
    retry policy with a backoff on each step whose failure can be transient, none on `validate` and `gate`."""
    for name in PIPELINES:
        spec = _spec(COMPILED_DIR / f"{name}.yaml")[0]
        executors = spec["deploymentSpec"]["executors"]
        for task_name, task in _tasks(spec).items():
            if task_name.startswith("condition-"):
                continue
            step = STEP[task_name.replace("-", "_")]
            resources = executors[f"exec-{step.task}"]["container"]["resources"]
            assert (resources["resourceCpuRequest"], resources["resourceMemoryRequest"]) == (step.cpu, step.memory)
            retry = task.get("retryPolicy")
            if step.retries:
                assert retry["maxRetryCount"] == step.retries and retry["backoffDuration"] == "60s", task_name
            else:
                assert retry is None, task_name
    assert not STEP["validate"].retries and not STEP["gate"].retries  # a rejected day, a gate's own error


def test_the_kfp_ui_gets_the_validation_report_the_gate_decision_and_the_roc():
    spec = _spec(COMPILED_DIR / "daily.yaml")[0]

    def outputs(step: str) -> dict[str, str]:
        artifacts = spec["components"][f"comp-{STEP[step].task}"]["outputDefinitions"]["artifacts"]
        return {name: a["artifactType"]["schemaTitle"] for name, a in artifacts.items()}

    assert outputs("validate")["summary"] == "system.HTML"
    assert outputs("gate")["summary"] == "system.Markdown"
    assert outputs("register")["roc"] == "system.ClassificationMetrics"


def test_the_reports_render_for_the_ui_with_the_clients_text_escaped(tmp_path):
    from cscnn.tools.gate import Check, GateDecision
    from cscnn.tools.validation import ValidationReport

    failure = {"table": "impressions", "expectation": "values_in_set", "column": "click", "details": "<b>row 3</b>"}
    stats = {"n_failed": 1, "n_expectations": 12, "rows": 40, "ctr": 0.1}
    report = ValidationReport("2026-01-05", False, [failure], stats, tmp_path / "r.json", None, ["drift: no history"])
    page = report.html()
    assert "Validation of 2026-01-05: FAILED" in page and "1 of 12" in page and "skipped: drift: no history" in page
    assert "&lt;b&gt;row 3&lt;/b&gt;" in page and "<b>row 3</b>" not in page
    passed = ValidationReport("2026-01-04", True, [], stats | {"n_failed": 0}, tmp_path / "r.json", None).html()
    assert "PASSED" in passed and "Failed expectations" not in passed

    decision = GateDecision(False, [Check("auc_floor", False, "0.48 | floor 0.50"), Check("auc_change", None, "none")])
    table = decision.markdown().splitlines()
    assert table[0] == "Gate: **FAIL**: the champion stays"
    assert table[4:] == ["| auc_floor | **fail** | 0.48 / floor 0.50 |", "| auc_change | skipped | none |"]
