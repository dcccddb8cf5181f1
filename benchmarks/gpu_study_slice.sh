#!/usr/bin/env bash
# A slice of the powered comparison (docs/results.md) on a lent GPU, in one call of at most ~8 minutes.
#
#   OUT=/some/folder SEEDS=5,6,7 WORLD=small bash benchmarks/gpu_study_slice.sh   # repository root
#
# Generates the world if missing (synthetic profiles only), then runs `cscnn compare` for the seeds in SEEDS
# on CUDA, each run stored under $OUT/<world>.runs/ exactly as on CPU (the device type is part of a run's key:
# CUDA runs are kept apart from CPU runs and never mixed into one table). Copy $OUT/<world>.runs/ back into
# docs/results/<world>-cuda.runs/ and rerun the same command to extend the table. Stops itself before the
# 8 minutes are up (timeout), leaving every finished run on disk (a run is written when it finishes).
set -uo pipefail
out=${OUT:-/tmp/gpu_study}
world=${WORLD:-small}
seeds=${SEEDS:-0,1,2}
variants=${VARIANTS:-no_image,attributes,cnn,se,cbam,cscnn}
mkdir -p "$out"
export PYTHONPATH="$PWD/src:$PWD" PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
first=${seeds%%,*}; last=${seeds##*,}
timeout 420 python3 - "$world" "$out" "$variants" "$first" "$last" <<'PY'
import sys
from pathlib import Path
from cscnn.config import load_config
from cscnn.data.io import open_world
from cscnn.data.synth import generate_world
from cscnn.training.compare import compare
world, out, variants, first, last = sys.argv[1], Path(sys.argv[2]), sys.argv[3].split(","), int(sys.argv[4]), int(sys.argv[5])
profile = world if world in ("small", "regions", "capacity") else "small"
cfg = load_config(profile, overrides=["train.device=cuda"])
if not (Path("data") / world).exists():  # synthetic profiles only; a photo world must travel with the tree
    generate_world(cfg.world, Path("data") / world)
compare(open_world(Path("data") / world), cfg, variants, list(range(first, last + 1)), out / f"{world}.md",
        f"benchmarks/gpu_study_slice.sh (WORLD={world}, seeds {first}..{last}, cuda)", resamples=200)
PY
ls "$out"
