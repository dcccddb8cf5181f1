"""Names a cluster deployment shares (standard library only): the Kubernetes objects `infra/k8s` creates and
the Kubeflow pipeline and the Kubeflow Trainer TrainJob refer to. One place, so that they agree.
"""

from __future__ import annotations

IMAGE = "ghcr.io/cscnn-ctr/cscnn-ctr:0.1.0"  # infra/Dockerfile: every pipeline step and training worker runs in it
STATE_PVC = "cscnn-state"  # the loop's shared state volume (infra/k8s/base/pvc.yaml)
STATE_MOUNT = "/var/lib/cscnn/state"  # where every step and worker mounts it (pass state_dir=STATE_MOUNT)
CONFIG_MAP = "cscnn-config"  # tool endpoints for every step (infra/k8s/base/kustomization.yaml)
CONFIG_ENV = ("MLFLOW_TRACKING_URI", "CSCNN_DVC_REMOTE")  # the ConfigMap keys a step reads as environment
GPU_RESOURCE = "nvidia.com/gpu"
GPU_NODE_LABEL = ("cloud.google.com/gke-accelerator", "nvidia-tesla-t4")  # node selector of the GPU pool
GPU_TAINT = "nvidia.com/gpu"  # GPU nodes are tainted; GPU work tolerates it
TRAINING_RUNTIME = "torch-distributed"  # Kubeflow Trainer's ClusterTrainingRuntime for PyTorch DDP
