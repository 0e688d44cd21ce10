#!/usr/bin/env bash
# GPU benchmark of titans-adapter, end to end in about 15 minutes on one H100/H200.
#
#   bash scripts/bench_gpu.sh                       # results in $OUT (default ./bench_out)
#   DEVICE=cpu SMALL=1 DTYPE=float32 bash scripts/bench_gpu.sh   # toy sizes on a CPU (a check of the script)
#
# 1. the memory alone vs titans-pytorch (if it imports; wheels in $WHEELS are installed first, offline);
# 2. per architecture (SmolLM2-135M, Llama-3.2-1B, Llama-3.1-8B; random weights from the published configs,
#    bf16): training-step overhead (eager, and for the two small ones with the memory compiled), inference
#    tokens/s and peak VRAM from 4k to 256k tokens, FLOPs;
# 3. the same with a 4-bit (NF4) base when bitsandbytes imports.
# Every step has its own time limit and a failed step does not stop the others.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-./bench_out}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
SMALL=${SMALL:-0}
DTYPE=${DTYPE:-bfloat16}
WHEELS=${WHEELS:-wheels}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false

if [ -d "$WHEELS" ] && ! $PY -c "import titans_pytorch" 2>/dev/null; then
    $PY -m pip install --no-index --find-links "$WHEELS" titans-pytorch >"$OUT/pip.log" 2>&1 || echo "titans-pytorch wheels did not install (see $OUT/pip.log)"
fi
$PY -c "import titans_pytorch" 2>/dev/null && echo "titans-pytorch: available" || echo "titans-pytorch: not available, memory section runs ours only"
{ nvidia-smi 2>/dev/null || true; $PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"; } >"$OUT/machine.txt" 2>&1

step() {  # step NAME SECONDS ARGS... : one bench.py run with its own limit, log and JSON
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s) $(date -u +%T)"
    timeout "$limit" $PY scripts/bench.py --device "$DEVICE" --json "$OUT/$name.json" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    [ $rc -eq 0 ] || echo "   $name failed or timed out (rc $rc), see $OUT/$name.log"
    grep -E "^(## |[a-z_]+ +\||[0-9]|\[)|ratio|overhead|flat" "$OUT/$name.log" | head -60 || true
}

if [ "$SMALL" = 1 ]; then
    step memory 300 --sections memory --memory-case 64,2,16,16,256,1 --memory-case 128,4,32,64,512,2 --repeats 1
    for arch in smollm2-135m; do
        step "$arch" 900 --sections training,inference,flops --base "$arch" --dtype "$DTYPE" --window 128 --windows 2 \
            --layers 8 --lengths 256,512 --max-base-length 256 --repeats 1
        step "$arch-compiled" 600 --sections training --base "$arch" --dtype "$DTYPE" --window 128 --windows 2 --layers 8 \
            --compile none,default --repeats 1
    done
else
    step memory 150 --sections memory --memory-grid gpu --memory-budget-s 110 --repeats 3
    step smollm2-135m 70 --sections training,inference,flops --base smollm2-135m --dtype "$DTYPE" --window 512 --windows 4 \
        --batch 4 --lengths 4096,16384,65536,262144 --base-piece 4096
    # The memory compiled (one graph per window, replayed as CUDA graphs): the first step compiles for ~75 s.
    step smollm2-135m-compiled 200 --sections training --base smollm2-135m --dtype "$DTYPE" --window 512 --windows 4 \
        --batch 4 --layers 8 --compile none,reduce-overhead --repeats 5
    step llama-3.2-1b 80 --sections training,inference,flops --base llama-3.2-1b --dtype "$DTYPE" --window 512 --windows 4 \
        --batch 4 --heads 8 --head-dim 128 --lengths 4096,16384,65536,262144 --max-base-length 32768 --base-piece 4096
    step llama-3.2-1b-compiled 200 --sections training --base llama-3.2-1b --dtype "$DTYPE" --window 512 --windows 4 \
        --batch 4 --heads 8 --head-dim 128 --layers 4 --compile none,reduce-overhead --repeats 5
    step llama-3.1-8b 100 --sections training,inference,flops --base llama-3.1-8b --dtype "$DTYPE" --window 512 --windows 4 \
        --batch 1 --heads 8 --head-dim 128 --lengths 4096,16384,65536,262144 --max-base-length 32768 --base-piece 4096
    if $PY -c "import bitsandbytes" 2>/dev/null; then
        step llama-3.1-8b-nf4 60 --sections training,inference --base llama-3.1-8b --dtype "$DTYPE" --quant4 --window 512 \
            --windows 4 --batch 1 --heads 8 --head-dim 128 --lengths 4096,65536 --max-base-length 16384 --base-piece 4096
    else
        echo "bitsandbytes not available: 4-bit step skipped" | tee "$OUT/nf4_skipped.txt"
    fi
fi
echo "done $(date -u +%T); results in $OUT"
