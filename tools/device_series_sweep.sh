#!/usr/bin/env bash
# Which shape of "series" (recurring accounts with their own tags) makes the tiny model memorise
# the tags of seen accounts within notebook 03's budget? 4 benchmark shapes x 2 seeds x 2 splits,
# 600 steps of notebook 03's recipe, scored every 100 steps; run on a lent 16-core machine without
# network (wheels carried in .whl/, the GPU hidden so the runs take the tiny profile's CPU path).
python -m pip install -q --no-deps --no-index --break-system-packages .whl/*.whl 2>&1 | grep -v WARN | tail -3
export CUDA_VISIBLE_DEVICES="" HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 PYTHONPATH=$PWD
R='"learning_rate": 1e-3, "lora_alpha": 256, "lr_scheduler": "constant_with_warmup", "max_steps": 600'
S="{\"A\": {$R, \"synthetic\": {\"n_series\": 6, \"series_share\": 0.4, \"series_tags\": 2}},
    \"B\": {$R, \"synthetic\": {\"n_series\": 10, \"series_share\": 0.4, \"series_tags\": 2}},
    \"C\": {$R, \"synthetic\": {\"n_series\": 8, \"series_share\": 0.4, \"series_tags\": 3}},
    \"D\": {$R, \"synthetic\": {\"n_series\": 16, \"series_share\": 0.2667, \"series_tags\": 2}}}"
timeout ${SWEEP_TIMEOUT:-430} python -m mmkp_helpers.bench.sft_seeds --settings "$S" --seeds 0 1 --jobs 16 --threads 1 \
    --results-dir /tmp/res --work /tmp/sw --out $OUT/series_sweep.jsonl > $OUT/a.log 2>&1
grep -c . $OUT/series_sweep.jsonl
grep -v '"final"' $OUT/series_sweep.jsonl | python -c "
import json,sys
for l in sys.stdin:
    r=json.loads(l); print(r['setting'],r['seed'],r['split'],r['step'],r['F1@M']['all'],r['F1@M'].get('tag'),r['posts'].get('series'))"
