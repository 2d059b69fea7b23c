#!/usr/bin/env bash
# The 8-seed check of notebook 03's original-vs-clean comparison on the synthetic benchmark with
# recurring accounts (8 series x 30 posts x 3 tags): notebook 03's recipe, 400 steps, scored every
# 100; run on a lent 16-core machine without network (wheels carried in .whl/, the GPU hidden so
# that the runs take the tiny profile's CPU path). Summarize: python -m mmkp_helpers.bench.sft_seeds --summarize FILE
python -m pip install -q --no-deps --no-index --break-system-packages .whl/*.whl 2>&1 | grep -v WARN | tail -3
export CUDA_VISIBLE_DEVICES="" HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 PYTHONPATH=$PWD
S='{"C": {"learning_rate": 1e-3, "lora_alpha": 256, "lr_scheduler": "constant_with_warmup", "max_steps": 400,
          "synthetic": {"n_series": 8, "series_share": 0.4, "series_tags": 3}}}'
timeout ${SWEEP_TIMEOUT:-300} python -m mmkp_helpers.bench.sft_seeds --settings "$S" --seeds 0 1 2 3 4 5 6 7 --jobs 16 \
    --threads 1 --results-dir /tmp/res --work /tmp/sw --out $OUT/series_seeds.jsonl > $OUT/a.log 2>&1
python -m mmkp_helpers.bench.sft_seeds --summarize $OUT/series_seeds.jsonl
