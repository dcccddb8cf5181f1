"""The powered comparison of docs/results.md: `cscnn compare` over an explicit range of seeds, so that several
processes (or a lent GPU, benchmarks/gpu_study_slice.sh) can each take their own seeds of one study.

Every run lands in the same runs folder as `cscnn compare --out <table>` uses (docs/results/<world>.runs/),
keyed as always, so processes never redo each other's runs; the table is rewritten after each run from what
this process has, and a last call with all the seeds (every run then found finished) writes the whole table.
Usage (repo root, venv active):

    python benchmarks/powered.py --data data/small --profile small --seeds 0-4 --out docs/results/small.md
    python benchmarks/powered.py --data data/small --profile small --seeds 5-9 --out docs/results/small.md &
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cscnn.config import load_config
from cscnn.data.io import open_world
from cscnn.training.compare import compare

VARIANTS = "no_image,attributes,cnn,se,cbam,cscnn"


def seed_range(text: str) -> list[int]:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--profile", default="small")
    parser.add_argument("--seeds", default="0-4", help="first-last, inclusive")
    parser.add_argument("--variants", default=VARIANTS)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    cfg = load_config(args.profile, overrides=args.overrides)
    command = f"python benchmarks/powered.py {' '.join(sys.argv[1:])}"
    compare(open_world(args.data), cfg, args.variants.split(","), seed_range(args.seeds), args.out, command,
            resamples=args.bootstrap)  # fmt: skip


if __name__ == "__main__":
    main()
