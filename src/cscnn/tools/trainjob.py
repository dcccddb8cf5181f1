"""Kubeflow Trainer: the daily train step as a `TrainJob` on a cluster (`trainer.kubeflow.org/v1alpha1`).

Supported release: Kubeflow Trainer v2.3.0 (its TrainJob CRD serves v1alpha1; `runtimePatches`, which replaced
`podTemplateOverrides` in v2.2, so releases before v2.2 refuse this job). tests/unit/test_trainjob_schema.py checks
the rendered job against that release's CRD schema, committed in tests/schemas/.

The job names the `torch-distributed` ClusterTrainingRuntime and says only what is specific to this run:
the project's image, the worker entry point under `torchrun` (the runtime sets the `PET_*` variables
torchrun reads: nodes, processes per node, rendezvous), `train.nodes` nodes x `train.workers` processes,
`train.gpus` GPUs per node, the state volume and the tool endpoints. Every worker runs
`python -m cscnn.training.launch`, the same entry point as `cscnn train --workers N` on one machine; rank 0
writes the checkpoint to the state volume. Built from the config; submitted and watched through the
Kubernetes API (`kubernetes` client's CustomObjectsApi; tests pass a fake). When the job has finished (or failed, or
timed out), the tail of each worker pod's log is copied into the step's own log, where the KFP UI and Airflow show
it, and the TrainJob is deleted (its JobSet and pods go with it): the checkpoint lives on the state volume, not in
the job, and a job left behind would keep its pods, and on a timeout its GPUs.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from cscnn import cluster, settings
from cscnn.config import Config
from cscnn.errors import RunFailure

GROUP, VERSION, PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
MANAGER = "cscnn-ctr"  # owner of this job's runtime patches
WORKER_CONTAINER = "node"  # the trainer container of the torch-distributed runtime
POD_SELECTOR = "jobset.sigs.k8s.io/jobset-name={name}"  # the TrainJob's JobSet has its name; its pods carry it
LOG_TAIL_LINES = 200  # of each worker's log, copied into the step's log


class TrainJobError(RunFailure):
    """The TrainJob failed, or did not finish in time; the message carries the job's own reason."""


class CustomObjects(Protocol):
    """The slice of `kubernetes.client.CustomObjectsApi` used here."""

    def create_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str, body: dict): ...

    def get_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str, name: str): ...

    def delete_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str, name: str): ...


class Pods(Protocol):
    """The slice of `kubernetes.client.CoreV1Api` used here."""

    def list_namespaced_pod(self, namespace: str, label_selector: str): ...

    def read_namespaced_pod_log(self, name: str, namespace: str, container: str, tail_lines: int) -> str: ...


def job_name(day: str, run_id: str) -> str:
    """An RFC 1035 label: lower case, digits and '-', at most 63 characters, starting with a letter."""
    name = re.sub(r"[^a-z0-9-]+", "-", f"cscnn-train-{day}-{run_id}".lower()).strip("-")
    return name[:63].rstrip("-")


def manifest(
    name: str,
    namespace: str,
    cfg: Config,
    worker_args: list[str],
    image: str = cluster.IMAGE,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The TrainJob of one training run: `cfg.train.nodes` x `cfg.train.workers` workers, `cfg.train.gpus` GPUs
    per node (then on the GPU pool), the state volume mounted where the pipeline mounts it."""
    t = cfg.train
    resources: dict[str, dict[str, str]] = {}
    if t.gpus:
        resources = {"limits": {cluster.GPU_RESOURCE: str(t.gpus)}, "requests": {cluster.GPU_RESOURCE: str(t.gpus)}}
    variables = [{"name": k, "value": v} for k, v in sorted((env or {}).items())]
    variables += [
        {"name": key, "valueFrom": {"configMapKeyRef": {"name": cluster.CONFIG_MAP, "key": key, "optional": True}}}
        for key in cluster.CONFIG_ENV
    ]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainJob",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "cscnn-ctr", "app.kubernetes.io/component": "training"},
        },
        "spec": {
            "runtimeRef": {"name": cluster.TRAINING_RUNTIME},
            "trainer": {
                "image": image,
                "command": ["torchrun", "-m", "cscnn.training.launch"],
                "args": list(worker_args),
                "env": variables,
                "numNodes": t.nodes,
                "numProcPerNode": t.workers,
                **({"resourcesPerNode": resources} if resources else {}),
            },
            "runtimePatches": [{"manager": MANAGER, "trainingRuntimeSpec": {"template": _template_patch(t.gpus)}}],
        },
    }


def _template_patch(gpus: int) -> dict[str, Any]:
    """The state volume on every worker pod, and the GPU pool's node selector and toleration when GPUs are asked."""
    pod: dict[str, Any] = {
        "volumes": [{"name": "state", "persistentVolumeClaim": {"claimName": cluster.STATE_PVC}}],
        "containers": [
            {"name": WORKER_CONTAINER, "volumeMounts": [{"name": "state", "mountPath": cluster.STATE_MOUNT}]}
        ],
    }
    if gpus:
        pod["nodeSelector"] = {cluster.GPU_NODE_LABEL[0]: cluster.GPU_NODE_LABEL[1]}
        pod["tolerations"] = [{"key": cluster.GPU_TAINT, "operator": "Exists", "effect": "NoSchedule"}]
    job = {"name": WORKER_CONTAINER, "template": {"spec": {"template": {"spec": pod}}}}
    return {"spec": {"replicatedJobs": [job]}}


def run(
    body: dict[str, Any],
    api: CustomObjects | None = None,
    timeout_s: float = 6 * 3600,
    poll_s: float = 15.0,
) -> dict[str, Any]:
    """Create the TrainJob and wait until its `Complete` or `Failed` condition; returns the final object."""
    api = api or _custom_objects()
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    deadline = time.monotonic() + timeout_s
    while True:
        job = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        conditions = {c.get("type"): c for c in (job.get("status") or {}).get("conditions") or []}
        if conditions.get("Complete", {}).get("status") == "True":
            return job
        failed = conditions.get("Failed", {})
        if failed.get("status") == "True":
            reason = ": ".join(x for x in (failed.get("reason"), failed.get("message")) if x)
            raise TrainJobError(f"TrainJob {namespace}/{name} failed" + (f" ({reason})" if reason else ""))
        if time.monotonic() > deadline:
            raise TrainJobError(f"TrainJob {namespace}/{name} did not finish within {timeout_s:.0f} s")
        time.sleep(poll_s)


@contextmanager
def submitted(
    body: dict[str, Any],
    api: CustomObjects | None = None,
    pods: Pods | None = None,
    echo: Callable[[str], None] = print,
    **wait: float,
) -> Iterator[dict[str, Any]]:
    """`run` the job and yield it finished; afterwards, whatever happened (a failure, a timeout, an error while the
    caller copies the checkpoint), copy the workers' logs into this step's log and delete the job. Neither
    clean-up action can hide the step's own outcome: each failure of theirs is one line of the log."""
    api = api or _custom_objects()
    try:
        yield run(body, api=api, **wait)
    finally:
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        _forward_logs(pods or _pods(), namespace, name, echo)
        try:
            api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            echo(f"TrainJob {namespace}/{name} deleted")
        except Exception as exc:  # reported, never raised over the step's own outcome
            echo(f"TrainJob {namespace}/{name} not deleted ({type(exc).__name__}: {exc}); delete it by hand")


def _forward_logs(pods: Pods, namespace: str, name: str, echo: Callable[[str], None]) -> None:
    try:
        found = pods.list_namespaced_pod(namespace, label_selector=POD_SELECTOR.format(name=name))
        for pod in sorted(found.items, key=lambda p: p.metadata.name):
            pod_name = pod.metadata.name
            text = pods.read_namespaced_pod_log(pod_name, namespace, container=WORKER_CONTAINER,
                                                tail_lines=LOG_TAIL_LINES)  # fmt: skip
            echo(f"--- {pod_name} (last {LOG_TAIL_LINES} lines) ---")
            for line in (text or "").splitlines():
                echo(f"{pod_name} | {line}")
    except Exception as exc:  # logs are a courtesy; the job's outcome is what the step reports
        echo(f"TrainJob {namespace}/{name}: worker logs not read ({type(exc).__name__}: {exc})")


def _client():
    """The `kubernetes` client, configured in-cluster (a pipeline pod), else from the local kubeconfig."""
    try:
        from kubernetes import client, config
    except ImportError as exc:  # pragma: no cover - the pipeline image has it (kfp depends on it)
        raise TrainJobError("the `kubernetes` package is needed to submit a TrainJob") from exc
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client


def _custom_objects() -> CustomObjects:
    return _client().CustomObjectsApi()


def _pods() -> Pods:
    return _client().CoreV1Api()


def namespace() -> str:
    """The namespace to create the job in: $CSCNN_NAMESPACE, else the pod's own (service account), else default."""
    chosen = settings.read("CSCNN_NAMESPACE")
    if chosen:
        return chosen
    own = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return own.read_text().strip() if own.is_file() else "default"


def checkpoint_dir(state_root: Path, name: str) -> Path:
    """Where rank 0 of the job writes the candidate: on the state volume, which the pipeline step also mounts."""
    return Path(state_root) / "trainjobs" / name / "candidate"
