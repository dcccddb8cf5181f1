#!/usr/bin/env bash
# The checks that need a GPU, as one short script (CI has no GPU; run it where one is lent).
#
#   OUT=/some/folder bash benchmarks/gpu_check.sh   # from the repository root; data/small must exist
#
# 1. the model and distributed unit tests with CUDA visible (they must pass or skip, never break on CUDA);
# 2. training throughput, plain CNN vs CSCNN, on CUDA (benchmarks/train_throughput.py);
# 3. one whole CSCNN training run on CUDA through the worker entry point (`cscnn.training.launch`), timed.
# It uses the machine's own python3 and packages (torch with CUDA); the project's pins do not apply there.
set -uo pipefail
out=${OUT:-/tmp/gpu_check}
mkdir -p "$out"
export PYTHONPATH="$PWD/src:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0))"

echo "== 1. unit tests with CUDA visible"
timeout 120 python3 -m pytest -q -p no:cacheprovider -m "not slow" --continue-on-collection-errors \
    tests/test_models.py tests/test_attention_forms.py tests/test_distributed.py 2>&1 | tail -25

echo "== 2. throughput on CUDA"
for batch in 2048 4096; do  # small has ~140k training rows: 22 steps of 4096 fit
    timeout 110 python3 benchmarks/train_throughput.py --profile small --data data/small --steps 20 \
        --no-dedup-off --batch-size "$batch" --set train.device=cuda \
        --out "$out/train_throughput_small_cuda_b$batch.json" 2>&1 | tail -6
done

echo "== 3. one whole CSCNN run on CUDA"
config=$(python3 -c "import json; from cscnn.config import load_config; \
print(json.dumps(load_config('small', overrides=['train.device=cuda']).to_dict()))")
start=$(date +%s.%N)
timeout 180 python3 -m cscnn.training.launch --world data/small --out /tmp/gpu_check_model --config-json "$config" \
    2>&1 | tail -8
echo "whole run: $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s"
cp /tmp/gpu_check_model/model.json "$out/cscnn_small_cuda_card.json" 2>/dev/null || ls /tmp/gpu_check_model
