"""The training entry point every worker runs: `python -m cscnn.training.launch --world W --out O --config-json J`.

One process or many: under `torchrun` (`cscnn train --workers N` on this machine, or Kubeflow Trainer's
`torch-distributed` runtime on a cluster) each worker joins the process group the launcher describes and
trains its share; rank 0 writes the checkpoint. `run_training` is what `cscnn train` and the daily
pipeline's train step call: in this process for one worker, through `torchrun --standalone` for several.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from cscnn.config import Config, config_from_dict
from cscnn.files import write_json


def worker_args(world_dir: Path, cfg: Config, out: Path, until: str | None = None) -> list[str]:
    """The arguments of one worker: where the data is, the whole config (as JSON), where to write."""
    args = ["--world", str(Path(world_dir).resolve()), "--out", str(Path(out).resolve())]
    args += ["--config-json", json.dumps(cfg.to_dict())]
    return args + (["--until", until] if until else [])


def run_training(world_dir: Path, cfg: Config, out: Path, until: str | None = None, progress: bool = False) -> dict:
    """Train `cfg` on the world (up to `until`), with `cfg.train.workers` processes; returns the model card."""
    from cscnn.data.io import open_world
    from cscnn.training import distributed
    from cscnn.training.checkpoint import read_card

    distributed.check_workers(cfg.train)
    if cfg.train.workers <= 1 or distributed.ranks_from_env().distributed:
        from cscnn.training.train import train

        world = open_world(world_dir)
        return train(world.until(until) if until else world, cfg, out, progress=progress).card
    distributed.launch(worker_args(world_dir, cfg, out, until), cfg.train.workers)
    return read_card(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cscnn.training.launch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", required=True, type=Path, help="world folder (data contract)")
    parser.add_argument("--out", required=True, type=Path, help="checkpoint folder (rank 0 writes it)")
    parser.add_argument("--config-json", required=True, help="the run's full config as JSON")
    parser.add_argument("--until", help="last day to use (YYYY-MM-DD); later days are ignored")
    parser.add_argument("--summary", type=Path, help="also write the model card here (rank 0)")
    args = parser.parse_args(argv)

    from cscnn.data.io import open_world
    from cscnn.training.train import train

    cfg = config_from_dict(json.loads(args.config_json))
    world = open_world(args.world)
    result = train(world.until(args.until) if args.until else world, cfg, args.out, progress=False)
    if args.summary is not None and result.card:
        write_json(args.summary, result.card)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
