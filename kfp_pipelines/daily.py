"""The daily pipeline and the embedding-refresh pipeline, wired from `components`.

Every task has KFP's execution cache off (`shared`): each step writes outside its outputs (the day's record,
the data registry, MLflow, the bento store), so a cached task would return yesterday's outputs and write
nothing (kfp_pipelines/README.md "Caching"). Each task requests the CPU and memory of its row in the step
table (`cscnn.daily.chain.STEPS`) and retries as often as the row says, with a backoff: the steps that talk
to a service or run on a GPU node (preemptible) retry; `validate` and `gate` do not (their failure is the
answer). Every step is safe to run again (docs/architecture.md "One run at a time, and crash
consistency"). Cluster concerns sit on the tasks: the embedding steps request a
GPU (accelerator type and limit) and are pinned to GPU nodes with a node selector and a toleration
(kfp-kubernetes). `kfp.local` ignores them with a warning; they are in the compiled YAML for a real cluster.
"""

from typing import Any

from kfp import dsl, kubernetes

from cscnn.cluster import (
    CONFIG_ENV,
    CONFIG_MAP,
    GPU_NODE_LABEL,
    GPU_RESOURCE,
    GPU_TAINT,
    REMOTES_SECRET,
    REMOTES_SECRET_ENV,
    STATE_MOUNT,
    STATE_PVC,
)
from cscnn.daily.chain import SHARED_PARAMETERS, STEP
from cscnn.settings import DEFAULT_PROFILE
from kfp_pipelines import components as c

# On a cluster every step gets the service endpoints of the ConfigMap that infra/k8s sets up and the
# credentials of the Secret `cscnn-remotes`; with a data registry remote there (cluster mode, infra/README.md)
# pass state_dir="" and each step works in a scratch folder of its own, handing everything over through the
# services. The state volume stays mounted for the embedded-style overlay (state_dir=STATE_MOUNT) and for the
# multi-node TrainJob's checkpoint. kfp.local ignores all three. The names are in cscnn.cluster.


RETRY_BACKOFF = {"backoff_duration": "60s", "backoff_factor": 2.0, "backoff_max_duration": "600s"}


def shared(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Every task: no execution cache (its side effects are the point), its step's CPU and memory requests and
    retries, the state volume, the endpoints."""
    step = STEP[task.component_spec.name.replace("-", "_")]
    task.set_caching_options(enable_caching=False)
    task.set_cpu_request(step.cpu).set_memory_request(step.memory)
    if step.retries:
        task.set_retry(num_retries=step.retries, **RETRY_BACKOFF)
    kubernetes.mount_pvc(task, pvc_name=STATE_PVC, mount_path=STATE_MOUNT)
    kubernetes.use_config_map_as_env(task, CONFIG_MAP, {key: key for key in CONFIG_ENV}, optional=True)
    kubernetes.use_secret_as_env(task, REMOTES_SECRET, {key: key for key in REMOTES_SECRET_ENV}, optional=True)
    return task


def on_gpu_node(task: dsl.PipelineTask, gpus: Any = 1) -> dsl.PipelineTask:
    """GPU work: `gpus` GPUs (a number or a pipeline parameter), the GPU pool, its taint tolerated."""
    shared(task)
    task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(gpus)
    task.set_memory_limit("16G").set_cpu_limit("4")
    kubernetes.add_node_selector(task, label_key=GPU_NODE_LABEL[0], label_value=GPU_NODE_LABEL[1])
    kubernetes.add_toleration(task, key=GPU_TAINT, operator="Exists", effect="NoSchedule")
    return task


@dsl.pipeline(name="cscnn-daily", description="Validate, version, refresh, retrain, gate and ship CSCNN for one day.")
def cscnn_daily(
    day: str,
    landing: str,
    state_dir: str,
    profile: str = DEFAULT_PROFILE,
    overrides: list = [],  # noqa: B006 - KFP pipeline parameters declare their default this way
    train_gpus: int = 1,
    force_retrain: bool = False,
) -> None:
    """`train_gpus`: GPUs of the train step's pod, where `train.workers` torchrun workers train on one node
    (set it to `train.workers`); with `train.nodes` > 1 the step only submits a Kubeflow Trainer TrainJob
    (whose pods request `train.gpus` each), so 0 frees the GPU the waiting step would hold. `force_retrain`:
    run a day the gate already decided again (without it the first step refuses such a day)."""
    common = dict(zip(SHARED_PARAMETERS, (day, profile, overrides, state_dir), strict=True))
    validated = shared(c.validate(landing=landing, force_retrain=force_retrain, **common))
    versioned = shared(c.version(landing=landing, **common)).after(validated)
    with dsl.If(versioned.outputs["Output"] == True, name="enough-history"):  # noqa: E712 - a KFP condition
        refresh = on_gpu_node(c.refresh_embeddings(**common))
        trained = on_gpu_node(c.train_candidate(gpus=train_gpus, **common), gpus=train_gpus).after(refresh)
        candidate = trained.outputs["candidate"]
        evaluated = shared(c.evaluate(candidate=candidate, **common))
        decided = shared(c.gate(evaluation=evaluated.outputs["Output"], **common))
        registered = shared(
            c.register(
                candidate=candidate,
                validation=validated.outputs["report"],
                data_version=versioned.outputs["data_version"],
                decision=decided.outputs["decision"],
                evaluation=evaluated.outputs["Output"],
                **common,
            )
        )
        with dsl.If(decided.outputs["Output"] == True, name="gate-passed"):  # noqa: E712 - a KFP condition
            table = on_gpu_node(c.publish_table(ref=registered.outputs["Output"], candidate=candidate, **common))
            packaged = shared(c.package(ref=table.outputs["Output"], **common))
            shared(c.promote(ref=table.outputs["Output"], **common)).after(packaged)
        with dsl.Else(name="gate-failed"):
            shared(c.keep_champion(decision=decided.outputs["decision"], **common)).after(registered)


@dsl.pipeline(name="cscnn-embedding-refresh", description="Embed new ads with the champion's CNN between retrains.")
def cscnn_embedding_refresh(day: str, landing: str, state_dir: str, profile: str = DEFAULT_PROFILE) -> None:
    common = dict(zip(SHARED_PARAMETERS, (day, profile, [], state_dir), strict=True))
    validated = shared(c.validate(landing=landing, **common))
    versioned = shared(c.version(landing=landing, **common)).after(validated)
    on_gpu_node(c.refresh_embeddings(**common)).after(versioned)


PIPELINES = {"daily": cscnn_daily, "embedding_refresh": cscnn_embedding_refresh}
