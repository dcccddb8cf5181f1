#!/usr/bin/env bash
# A slice of the powered comparison (docs/results.md) on a lent GPU, in one call of at most ~8 minutes.
#
#   OUT=/some/folder SEEDS=5-7 WORLD=small bash benchmarks/gpu_study_slice.sh   # repository root
#
# Generates the world if missing (synthetic profiles only), then runs benchmarks/powered.py for the seeds in SEEDS
# on CUDA, each run stored under $OUT/<world>.runs/ exactly as on CPU (the device type is part of a run's key:
# CUDA runs are kept apart from CPU runs and never mixed into one table). Copy $OUT/<world>.runs/ back into
# docs/results/<world>-cuda.runs/ and rerun the same command to extend the table. Stops itself before the
# 8 minutes are up (timeout), leaving every finished run on disk (a run is written when it finishes).
set -uo pipefail
out=${OUT:-/tmp/gpu_study}
world=${WORLD:-small}
seeds=${SEEDS:-0-2}
variants=${VARIANTS:-no_image,attributes,cnn,se,cbam,cscnn}
mkdir -p "$out"
export PYTHONPATH="$PWD/src:$PWD" PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
profile=$world; case $world in small|regions|capacity) ;; *) profile=small ;; esac
python3 -c "from pathlib import Path; from cscnn.config import load_config; from cscnn.data.synth import generate_world
p = Path('data/$world'); p.exists() or generate_world(load_config('$profile').world, p)"  # synthetic worlds only
timeout 420 python3 benchmarks/powered.py --data "data/$world" --profile "$profile" --seeds "$seeds" \
    --variants "$variants" --set train.device=cuda --bootstrap 200 --out "$out/$world.md"
ls "$out"
