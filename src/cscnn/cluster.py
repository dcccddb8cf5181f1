"""Names a cluster deployment shares (standard library only): the Kubernetes objects `infra/k8s` creates and
the Kubeflow pipeline and the Kubeflow Trainer TrainJob refer to. One place, so that they agree.
"""

from __future__ import annotations

IMAGE = "ghcr.io/cscnn-ctr/cscnn-ctr:0.1.0"  # infra/Dockerfile: every pipeline step and training worker runs in it
STATE_PVC = "cscnn-state"  # the loop's shared state volume (infra/k8s/base/pvc.yaml)
STATE_MOUNT = "/var/lib/cscnn/state"  # where every step and worker mounts it (pass state_dir=STATE_MOUNT)
CONFIG_MAP = "cscnn-config"  # tool endpoints for every step (infra/k8s/base/kustomization.yaml)
# The ConfigMap keys a step reads as environment: the services it talks to (infra/README.md "Cluster mode").
CONFIG_ENV = ("MLFLOW_TRACKING_URI", "CSCNN_DVC_REMOTE", "CSCNN_STATUS_STORE", "AWS_ENDPOINT_URL")
# The Secret with the credentials of the object store and the data registry's git remote (a URL that may carry
# a token): optional, so a cluster with workload identity and a public remote needs none.
REMOTES_SECRET = "cscnn-remotes"
REMOTES_SECRET_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "CSCNN_DATA_REGISTRY_REMOTE")
GPU_RESOURCE = "nvidia.com/gpu"
GPU_NODE_LABEL = ("cloud.google.com/gke-accelerator", "nvidia-tesla-t4")  # node selector of the GPU pool
GPU_TAINT = "nvidia.com/gpu"  # GPU nodes are tainted; GPU work tolerates it
TRAINING_RUNTIME = "torch-distributed"  # Kubeflow Trainer's ClusterTrainingRuntime for PyTorch DDP
