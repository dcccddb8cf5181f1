#!/usr/bin/env bash
# Issue 23's GPU figures, as one script for a lent GPU machine (about 6 minutes on one H200; every part has a
# timeout, the sum stays under 8 minutes). No GPU has been lent to this issue yet: nothing here has run.
#
#   OUT=/some/folder bash benchmarks/gpu_data_path.sh   # from the repository root
#
# 1. whole CSCNN run on `small`: CUDA against the same run on 2 CPU cores of the same machine (taskset);
# 2. GPU busy time per step, batches assembled inline vs ahead (train.prefetch_batches), and torch.compile
#    of the CNN over the bucketed image shapes (benchmarks/gpu_steps.py);
# 3. the embedding refresh (`export_table`) in images/s on CUDA, fresh store and store in place.
# It uses the machine's own python3 and torch with CUDA, as benchmarks/gpu_check.sh does.
set -uo pipefail
out=${OUT:-/tmp/gpu_data_path}
mkdir -p "$out"
export PYTHONPATH="$PWD/src:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "from cscnn.config import load_config; from cscnn.data.synth import generate_world; \
generate_world(load_config('small').world, 'data/small')"

whole_run() {  # $1: device, $2: label, $3...: command prefix
    local device=$1 label=$2; shift 2
    config=$(python3 -c "import json; from cscnn.config import load_config; \
print(json.dumps(load_config('small', overrides=['train.device=$device', 'model.variant=cscnn']).to_dict()))")
    start=$(date +%s.%N)
    "$@" python3 -m cscnn.training.launch --world data/small --out "/tmp/gpu_dp_$label" --config-json "$config" 2>&1 | tail -3
    echo "whole run ($label): $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s" | tee -a "$out/whole_runs.txt"
}
echo "== 1. whole CSCNN run, CUDA vs 2 CPU cores"
whole_run cuda cuda timeout 100
whole_run cpu cpu2 timeout 150 taskset -c 0,1 env OMP_NUM_THREADS=2

echo "== 2. GPU busy time per step (inline, ahead, ahead + torch.compile)"
timeout 120 python3 benchmarks/gpu_steps.py --profile small --data data/small --steps 40 --out "$out/gpu_steps.json" \
    2>&1 | grep -v Warning | tail -5

echo "== 3. embedding refresh on CUDA"
timeout 100 python3 benchmarks/data_path.py --parts embed --epochs 1 --device cuda --out "$out/data_path_cuda.json" \
    2>&1 | grep -v Warning | tail -5
