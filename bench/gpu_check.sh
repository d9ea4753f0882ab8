#!/usr/bin/env bash
# One command for whoever has a GPU (`deno task gpu-check [OUT_DIR]`), inside ten minutes:
#   1. adapter report: adapter, limits, timestamp probe, physical ceiling (bench/gpu_report.ts)
#   2. the kernel and engine tests on that adapter (tests/kernels, tests/engine)
#   3. matmul, conv and SAM ViT-B encoder benchmarks (bench/main.ts, bench/models.ts)
#   4. the PyTorch-CUDA peer on the same shapes when torch sees a CUDA device
#   5. the paper profile's classifier step (ResNet-50-ADL b16 @512, checkpointed): time and memory
# Each step has its own time limit and is cut to what is left of the ten minutes; logs and JSON go
# to OUT_DIR (default gpu_check_<date>). Exit status: 0 when every step passed, else 1.
set -u
cd "$(dirname "$0")/.."
OUT=${1:-gpu_check_$(date -u +%Y%m%dT%H%M%SZ)}
if [ "$OUT" = "--help" ] || [ "$OUT" = "-h" ]; then
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
  echo "usage: bench/gpu_check.sh [OUT_DIR]"
  exit 0
fi
mkdir -p "$OUT"
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp} NO_COLOR=1
DEADLINE=$((SECONDS + 600))
FAILED=0

step() { # step NAME LIMIT_S COMMAND...
  local name=$1 limit=$2 left
  shift 2
  left=$((DEADLINE - SECONDS))
  if [ "$left" -lt "$limit" ]; then limit=$left; fi
  if [ "$limit" -lt 15 ]; then
    echo "== $name: skipped, the ten minutes are spent"
    FAILED=1
    return
  fi
  echo "== $name (limit ${limit} s) -> $OUT/$name.log"
  local t0=$SECONDS
  timeout --signal=KILL "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "   exit $rc after $((SECONDS - t0)) s"
  if [ "$rc" -ne 0 ]; then FAILED=1; tail -n 5 "$OUT/$name.log" | sed 's/^/   | /'; fi
}

step adapter 90 deno run -A bench/gpu_report.ts --require-gpu
cat "$OUT/adapter.log"
step tests 200 deno test -A --preload tests/setup.ts tests/kernels/ tests/engine/
step matmul 60 deno run -A bench/main.ts --filter matmul --runs 3 --json "$OUT/matmul.json"
step conv 60 deno run -A bench/main.ts --filter conv --runs 2 --json "$OUT/conv.json"
step encoder 60 deno run -A bench/models.ts sam-encoder --runs 2 --json "$OUT/encoder.json"
if /usr/bin/python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  step pytorch-cuda 60 /usr/bin/python3 bench/peers/torch_cuda.py --runs 5
else
  echo "== pytorch-cuda: skipped (no torch with CUDA here)"
fi
step classifier-step 120 deno run -A bench/models.ts "train-step b16 @512 checkpointed" --runs 1 \
  --json "$OUT/classifier_step.json"
grep -h "" "$OUT"/classifier-step.log | grep -E "train-step" | tail -n 2
echo "gpu_check: $((SECONDS)) s in all; logs in $OUT; $([ $FAILED = 0 ] && echo 'all steps passed' || echo 'SOME STEPS FAILED')"
exit $FAILED
