"""The cluster path of the train step: a Kubeflow Trainer TrainJob built from the config, submitted and watched
through the Kubernetes API. No cluster here: the API is a fake that plays the controller (it runs the
job's worker command in this process, as one worker, and reports the conditions a real job reports)."""

from __future__ import annotations

import json
import re
import shutil
from types import SimpleNamespace

import pytest

from cscnn import cluster
from cscnn.config import config_from_dict
from cscnn.daily import steps
from cscnn.daily.status import read
from cscnn.state import State
from cscnn.tools import trainjob
from cscnn.training import launch


class FakeCustomObjects:
    """create/get of `kubernetes.client.CustomObjectsApi`; `conditions` are returned one poll after another."""

    def __init__(self, conditions: list[list[dict]], on_create=None) -> None:
        self.conditions, self.on_create, self.created, self.polls = list(conditions), on_create, [], 0
        self.deleted: list[tuple[str, str]] = []

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        assert (group, version, plural) == (trainjob.GROUP, trainjob.VERSION, trainjob.PLURAL)
        self.created.append((namespace, body))
        if self.on_create:
            self.on_create(body)
        return body

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        self.polls += 1
        now = self.conditions.pop(0) if len(self.conditions) > 1 else self.conditions[0]
        return {"metadata": {"name": name}, "status": {"conditions": now}}

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name):
        assert (group, version, plural) == (trainjob.GROUP, trainjob.VERSION, trainjob.PLURAL)
        self.deleted.append((namespace, name))


class FakePods:
    """list/log of `kubernetes.client.CoreV1Api`: the pods of one JobSet, each with a log."""

    def __init__(self, logs: dict[str, str]) -> None:
        self.logs, self.selectors = logs, []

    def list_namespaced_pod(self, namespace, label_selector):
        self.selectors.append(label_selector)
        return SimpleNamespace(items=[SimpleNamespace(metadata=SimpleNamespace(name=n)) for n in self.logs])

    def read_namespaced_pod_log(self, name, namespace, container, tail_lines):
        assert container == trainjob.WORKER_CONTAINER and tail_lines == trainjob.LOG_TAIL_LINES
        return self.logs[name]


def test_the_trainjob_names_the_runtime_and_says_nodes_workers_gpus_volume(tiny_with, tmp_path):
    cfg = tiny_with("train.nodes=4", "train.workers=8", "train.gpus=8")
    args = launch.worker_args(tmp_path / "world", cfg, tmp_path / "out", until="2026-01-04")
    body = trainjob.manifest("cscnn-train-x", "ml", cfg, args, env={"CSCNN_STATE": cluster.STATE_MOUNT})
    assert body["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and body["kind"] == "TrainJob"
    assert body["metadata"]["namespace"] == "ml"
    spec = body["spec"]
    assert spec["runtimeRef"] == {"name": "torch-distributed"}
    trainer = spec["trainer"]
    assert trainer["image"] == cluster.IMAGE
    assert trainer["command"] == ["torchrun", "-m", "cscnn.training.launch"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (4, 8)
    assert trainer["resourcesPerNode"]["limits"] == {"nvidia.com/gpu": "8"}
    assert config_from_dict(json.loads(trainer["args"][trainer["args"].index("--config-json") + 1])) == cfg
    assert trainer["args"][-2:] == ["--until", "2026-01-04"]
    env = {e["name"]: e for e in trainer["env"]}
    assert env["CSCNN_STATE"]["value"] == cluster.STATE_MOUNT
    assert env["MLFLOW_TRACKING_URI"]["valueFrom"]["configMapKeyRef"]["name"] == cluster.CONFIG_MAP
    (patch,) = spec["runtimePatches"]
    (job,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    pod = job["template"]["spec"]["template"]["spec"]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == cluster.STATE_PVC
    assert pod["containers"][0]["volumeMounts"][0]["mountPath"] == cluster.STATE_MOUNT
    assert pod["nodeSelector"] == {cluster.GPU_NODE_LABEL[0]: cluster.GPU_NODE_LABEL[1]}
    cpu = trainjob.manifest("cscnn-train-y", "ml", tiny_with("train.gpus=0"), args)
    cpu_pod = cpu["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    assert "resourcesPerNode" not in cpu["spec"]["trainer"]
    assert "nodeSelector" not in cpu_pod["template"]["spec"]["template"]["spec"]


def test_job_names_are_dns_labels():
    name = trainjob.job_name("2026-01-04", "AbC_123" * 10)
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63


def test_run_waits_for_complete_and_reports_a_failure_with_its_reason(tiny_config):
    body = trainjob.manifest("cscnn-train-z", "ml", tiny_config, ["--world", "w"])
    running = [{"type": "Created", "status": "True"}]
    done = FakeCustomObjects([[], running, [*running, {"type": "Complete", "status": "True"}]])
    assert trainjob.run(body, api=done, poll_s=0)["status"]["conditions"][-1]["type"] == "Complete"
    assert done.polls == 3 and done.created[0][0] == "ml"
    failed = FakeCustomObjects([[{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]])
    with pytest.raises(trainjob.TrainJobError, match=r"ml/cscnn-train-z failed.*BackoffLimitExceeded"):
        trainjob.run(body, api=failed, poll_s=0)
    with pytest.raises(trainjob.TrainJobError, match="did not finish within"):
        trainjob.run(body, api=FakeCustomObjects([running]), timeout_s=0, poll_s=0)


def test_the_train_step_with_several_nodes_runs_as_a_trainjob(tiny_with, tiny_world, tmp_path, monkeypatch):
    state = State(tmp_path / "state")
    shutil.copytree(tiny_world, state.registry_world)
    day = sorted(p.stem for p in (state.registry_world / "impressions").glob("*.parquet"))[-1]
    cfg = tiny_with("train.nodes=2", "train.workers=1", "train.epochs=1")

    def controller(body):  # what the job's workers do on the cluster: the same entry point, here one worker
        launch.main(body["spec"]["trainer"]["args"])

    fake = FakeCustomObjects([[{"type": "Complete", "status": "True"}]], on_create=controller)
    monkeypatch.setattr(trainjob, "_custom_objects", lambda: fake)
    monkeypatch.setattr(trainjob, "_pods", lambda: FakePods({"w-0": "epoch 1 done"}))
    monkeypatch.setenv("CSCNN_NAMESPACE", "ml")
    summary = steps.train_candidate(day, cfg, state, tmp_path / "candidate")
    ((namespace, body),) = fake.created
    assert namespace == "ml" and body["spec"]["trainer"]["numNodes"] == 2
    assert (tmp_path / "candidate" / "model.json").is_file()
    assert summary.days["test"] == [day]
    assert read(state, day).candidate["fingerprint"] == summary.fingerprint
    assert fake.deleted == [("ml", body["metadata"]["name"])]  # after the checkpoint was copied out


def test_a_finished_or_failed_job_leaves_its_logs_in_the_step_log_and_is_deleted(tiny_with):
    body = trainjob.manifest("cscnn-train-l", "ml", tiny_with(), ["--world", "w"])
    pods = FakePods({"cscnn-train-l-node-0-1": "rank 1\nok", "cscnn-train-l-node-0-0": "rank 0\ncheckpoint written"})
    done, lines = FakeCustomObjects([[{"type": "Complete", "status": "True"}]]), []
    with trainjob.submitted(body, api=done, pods=pods, echo=lines.append, poll_s=0) as job:
        assert job["status"]["conditions"][0]["type"] == "Complete" and done.deleted == []
    assert pods.selectors == ["jobset.sigs.k8s.io/jobset-name=cscnn-train-l"]
    assert lines.index("cscnn-train-l-node-0-0 | checkpoint written") < lines.index("cscnn-train-l-node-0-1 | ok")
    assert done.deleted == [("ml", "cscnn-train-l")] and lines[-1] == "TrainJob ml/cscnn-train-l deleted"

    failed = FakeCustomObjects([[{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]])
    failing = trainjob.submitted(body, api=failed, pods=pods, echo=lines.append, poll_s=0)
    with pytest.raises(trainjob.TrainJobError, match="BackoffLimitExceeded"), failing:
        raise AssertionError("not reached: the job failed")
    assert failed.deleted == [("ml", "cscnn-train-l")]


def test_clean_up_failures_never_hide_the_outcome(tiny_with):
    body = trainjob.manifest("cscnn-train-m", "ml", tiny_with(), ["--world", "w"])

    class Unreachable(FakeCustomObjects):
        def delete_namespaced_custom_object(self, *args):
            raise ConnectionError("API server gone")

    class NoLogs(FakePods):
        def list_namespaced_pod(self, namespace, label_selector):
            raise PermissionError("pods/log is forbidden")

    api, lines = Unreachable([[{"type": "Complete", "status": "True"}]]), []
    with trainjob.submitted(body, api=api, pods=NoLogs({}), echo=lines.append, poll_s=0):
        pass
    assert "worker logs not read (PermissionError: pods/log is forbidden)" in lines[0]
    assert "not deleted (ConnectionError: API server gone); delete it by hand" in lines[1]
