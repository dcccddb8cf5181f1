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


def worker_args(world_dir: Path, cfg: Config, out: Path, until: str | None = None) -> list[str]:
    """The arguments of one worker: where the data is, the whole config (as JSON), where to write."""
    args = ["--world", str(Path(world_dir).resolve()), "--out", str(Path(out).resolve())]
    args += ["--config-json", json.dumps(cfg.to_dict())]
    return args + (["--until", until] if until else [])


def run_training(world_dir: Path, cfg: Config, out: Path, until: str | None = None, progress: bool = False) -> dict:
    """Train `cfg` on the world (up to `until`), with `cfg.train.workers` processes; returns the model card
    (in this process for one worker or when already a worker of a launcher, else through torchrun)."""
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


def run_embedding(model_dir: Path, world_dir: Path, out: Path, device: str = "auto", workers: int = 1) -> dict:
    """The full embedding table of a checkpoint, the catalogue shared by `workers` processes; returns its meta."""
    from cscnn.training import distributed
    from cscnn.training.embed import export_table

    if workers <= 1 or distributed.ranks_from_env().distributed:
        return export_table(model_dir, world_dir, out, device)
    args = ["--task", "embed", "--model", str(Path(model_dir).resolve()), "--world", str(Path(world_dir).resolve())]
    distributed.launch([*args, "--out", str(Path(out).resolve()), "--device", device], workers)
    return json.loads((Path(out) / "meta.json").read_text())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cscnn.training.launch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=("train", "embed"), default="train")
    parser.add_argument("--world", required=True, type=Path, help="world folder (data contract)")
    parser.add_argument("--out", required=True, type=Path, help="checkpoint / table folder (rank 0 writes it)")
    parser.add_argument("--config-json", help="train: the run's full config as JSON")
    parser.add_argument("--until", help="train: last day to use (YYYY-MM-DD); later days are ignored")
    parser.add_argument("--model", type=Path, help="embed: the checkpoint whose CNN embeds the catalogue")
    parser.add_argument("--device", default="auto", help="embed: auto, cpu or cuda")
    args = parser.parse_args(argv)

    if args.task == "embed":
        from cscnn.training.embed import export_table

        if args.model is None:
            parser.error("--task embed needs --model")
        export_table(args.model, args.world, args.out, args.device)
        return 0
    if args.config_json is None:
        parser.error("--task train needs --config-json")
    from cscnn.data.io import open_world
    from cscnn.training.train import train

    cfg = config_from_dict(json.loads(args.config_json))
    world = open_world(args.world)
    train(world.until(args.until) if args.until else world, cfg, args.out, progress=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
