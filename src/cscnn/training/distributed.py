"""Synchronous data parallelism with `torch.distributed` (DDP), the seed's fourth idea.

Every rank runs the same entry point (`python -m cscnn.training.launch`, or `cscnn train` under any launcher
that sets RANK / WORLD_SIZE / LOCAL_RANK: `torchrun`, Kubeflow Trainer). All ranks read the same global
stream of training rows in the same seeded order and cut it into the same global batches; rank r takes
the r-th contiguous slice of each global batch (`local_slice`). Gradients are all-reduced every step; the
loss is scaled so that their average is the gradient of the *global* batch's mean loss, so the model does
not depend on how many workers trained it. gloo on CPU, NCCL on CUDA. Rank 0 alone writes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from cscnn.config import TrainConfig
from cscnn.errors import ConfigError, CSCNNError


class DistributedError(CSCNNError):
    """A worker of a distributed run failed; the message names the rank."""


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def ranks_from_env(env: Mapping[str, str] | None = None) -> Ranks:
    """What the launcher set (RANK, WORLD_SIZE, LOCAL_RANK); one process when nothing is set."""
    env = os.environ if env is None else env
    try:
        return Ranks(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))
    except ValueError as exc:
        raise ConfigError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers: {exc}") from None


def current() -> Ranks:
    """The ranks of the process group this process belongs to (one process when there is none)."""
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size(), ranks_from_env().local_rank)
    return Ranks()


def backend_for(cfg: TrainConfig, device: torch.device) -> str:
    """NCCL for CUDA, gloo for CPU, unless `train.dist_backend` names one; NCCL without CUDA is refused."""
    chosen = cfg.dist_backend if cfg.dist_backend != "auto" else ("nccl" if device.type == "cuda" else "gloo")
    if chosen == "nccl" and not torch.cuda.is_available():
        raise ConfigError("train.dist_backend=nccl needs CUDA, and no CUDA device is available here; use gloo")
    return chosen


def device_for(ranks: Ranks, device: torch.device) -> torch.device:
    """Each rank on a node takes its own GPU (LOCAL_RANK); CPU ranks share the CPU."""
    if device.type == "cuda" and ranks.distributed:
        if ranks.local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"local rank {ranks.local_rank} has no GPU: this node has {torch.cuda.device_count()}; "
                "start at most one worker per GPU"
            )
        return torch.device("cuda", ranks.local_rank)
    return device


@contextlib.contextmanager
def process_group(cfg: TrainConfig, device: torch.device) -> Iterator[Ranks]:
    """Join the process group the launcher describes (if any) for the block, then leave it.

    A group someone else initialised is used as it is and left open. A rank that dies makes the others
    fail within `train.dist_timeout_s` instead of hanging.
    """
    ranks = ranks_from_env()
    if not ranks.distributed or dist.is_initialized():
        yield current() if dist.is_initialized() else ranks
        return
    backend = backend_for(cfg, device)
    if device.type == "cuda":
        torch.cuda.set_device(device_for(ranks, device))
    dist.init_process_group(backend, timeout=dt.timedelta(seconds=cfg.dist_timeout_s))
    try:
        yield current()
    finally:
        dist.destroy_process_group()


def local_slice(n: int, ranks: Ranks) -> slice:
    """This rank's contiguous share of `n` rows: sizes differ by at most one, the order is the rank order."""
    return slice(n * ranks.rank // ranks.world_size, n * (ranks.rank + 1) // ranks.world_size)


def gather(arrays: dict[str, np.ndarray], ranks: Ranks) -> dict[str, np.ndarray]:
    """Concatenate every rank's arrays in rank order, on every rank (validation scores, table rows)."""
    if not ranks.distributed:
        return arrays
    parts: list[dict[str, np.ndarray] | None] = [None] * ranks.world_size
    dist.all_gather_object(parts, arrays)
    return {key: np.concatenate([part[key] for part in parts if part is not None]) for key in arrays}


def broadcast_flag(value: bool, ranks: Ranks) -> bool:
    """Rank 0's decision, on every rank (early stopping must stop all ranks at the same epoch)."""
    if not ranks.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        dist.barrier()


# --- launching workers on this machine -------------------------------------------------------------------

_ROOT_CAUSE = re.compile(r"Root Cause.*?rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)", re.S)


def check_workers(cfg: TrainConfig) -> None:
    """Refuse a worker count that cannot work, before anything starts."""
    uses_cuda = cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available())
    if uses_cuda and cfg.workers > 1:
        count = torch.cuda.device_count()
        if count and cfg.workers > count:
            raise ConfigError(f"train.workers={cfg.workers} but this machine has {count} GPU(s): one worker per GPU")
    if cfg.dist_backend == "nccl" and not torch.cuda.is_available():
        raise ConfigError("train.dist_backend=nccl needs CUDA, and no CUDA device is available here; use gloo")


def launch(
    module_args: list[str], workers: int, env: Mapping[str, str] | None = None, module: str = "cscnn.training.launch"
) -> None:
    """Run `python -m MODULE ARGS` (the worker entry point) as `workers` processes with `torchrun --standalone`
    and wait.

    The workers' output goes to this process's; a failed worker raises DistributedError naming its rank
    (torchrun stops the others at once).
    """
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={workers}",
        "--max-restarts=0",
        "-m",
        module,
        *module_args,
    ]
    run_env = {**os.environ, **(env or {}), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.Popen(command, env=run_env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    errors = []
    for line in proc.stderr:  # pass it through, keep it for the root cause
        sys.stderr.write(line)
        errors.append(line)
    if proc.wait() != 0:
        text = "".join(errors)
        found = _ROOT_CAUSE.search(text)
        who = f"rank {found.group(1)} exited with code {found.group(2)}" if found else f"exit code {proc.returncode}"
        last = next((line.strip() for line in reversed(errors) if "Error" in line and "ChildFailed" not in line), "")
        raise DistributedError(
            f"distributed training with {workers} workers failed: {who}" + (f" ({last})" if last else "")
        )
