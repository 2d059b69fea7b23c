#!/usr/bin/env bash
# The 8-seed measurement of notebook 03's tiny SFT recipe on version 1 of the synthetic benchmark (no
# recurring accounts: "synthetic": {"n_series": 0} gives the same posts today; README, "Measured figures"), as it was run
# on a lent 16-core machine without network: wheels carried in .whl/, 16 runs of one thread each,
# the GPU hidden so that the runs take the CPU path that the tiny profile takes. (Then the splits were
# carried in results/tiny/data, hence the /work/main link; now the setting's splits are generated there.)
# Here: python -m mmkp_helpers.bench.sft_seeds --settings '{"N": {...}}' --seeds 0 1 --jobs 1
python -m pip install -q --no-deps --no-index --break-system-packages .whl/*.whl 2>&1 | grep -v WARN | tail -3
mkdir -p /work && [ -e /work/main ] || ln -s "$PWD" /work/main
export CUDA_VISIBLE_DEVICES="" HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 PYTHONPATH=$PWD
python -c "from mmkp_helpers import modeling; print(modeling.resolve_model('tiny-qwen2_vl'))" 2>&1 | tail -1
N='"N": {"learning_rate": 1e-3, "lora_alpha": 256, "lr_scheduler": "constant_with_warmup", "max_steps": 500, "synthetic": {"n_series": 0}}'
timeout 320 python -m mmkp_helpers.bench.sft_seeds --settings "{$N}" --seeds 0 1 2 3 4 5 6 7 --jobs 16 --threads 1 --work /tmp/sw --out $OUT/sweep.jsonl > $OUT/a.log 2>&1
grep -c . $OUT/sweep.jsonl
