#!/usr/bin/env bash
# One device run: compiled memory vs eager in the training step, the memory grid's missing cells, an NF4 base, inference flatness.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
DEVICE=${DEVICE:-cuda}
if [ "$DEVICE" = cuda ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl >"$OUT/pip.log" 2>&1 || echo "pip failed"
    export PYTHONPATH=/tmp/site:$PWD
    { nvidia-smi; python3 -c "import torch, transformers, titans_pytorch, bitsandbytes; print(torch.__version__, transformers.__version__, bitsandbytes.__version__)"; } >"$OUT/machine.txt" 2>&1
    tail -1 "$OUT/machine.txt"
    SMOL=smollm2-135m; ONEB=llama-3.2-1b; W=512; NW=4; BATCH=4; L1=8; L3="8,15,22"; LB=4; H="--heads 8 --head-dim 128"; HS=""
    LENS=4096,16384,65536,262144; CASES="--memory-case 576,4,64,64,8192,4 --memory-case 2048,8,128,64,8192,4 --memory-case 576,4,64,16,8192,1 --memory-case 2048,8,128,64,8192,1"
else
    export PYTHONPATH=$PWD
    SMOL=/tmp/tiny.json; ONEB=/tmp/tiny.json; W=64; NW=2; BATCH=2; L1=1; L3="1,2"; LB=1; H="--heads 2 --head-dim 16 --chunk 16"; HS="$H"
    LENS=256,512; CASES="--memory-case 64,2,16,16,256,1"
fi
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
B="python3 scripts/bench.py --device $DEVICE"
step() {  # step NAME LIMIT ARGS...
    local name=$1 limit=$2; shift 2
    echo "== $name (limit ${limit}s) $(date -u +%T)"
    timeout "$limit" $B --json "$OUT/$name.json" "$@" >"$OUT/$name.log" 2>&1 || echo "   $name rc $?"
    grep -E "^  |overhead|flat|^[a-z\[]" "$OUT/$name.log" | grep -v Warning | tail -25
}
step smol_compile 180 --sections training --base $SMOL --dtype bfloat16 --window $W --windows $NW --batch $BATCH $HS --layers "$L1" --compile none,default,reduce-overhead --repeats 5
best=$(python3 - "$OUT/smol_compile.json" <<'PY'
import json, sys
try:
    rows = [r for r in json.load(open(sys.argv[1]))["training"] if "error" not in r and r["compile"] != "none"]
    print(min(rows, key=lambda r: r["training_overhead"])["compile"] if rows else "default")
except Exception:
    print("default")
PY
)
echo "best compile mode: $best"
step smol_three 90 --sections training,flops --base $SMOL --dtype bfloat16 --window $W --windows $NW --batch $BATCH $HS --layers "$L3" --compile none,$best --repeats 5
step llama1b_compile 100 --sections training --base $ONEB --dtype bfloat16 --window $W --windows $NW --batch $BATCH $H --layers "$LB" --compile none,$best --repeats 5
step memory 80 --sections memory $CASES --memory-budget-s 65 --repeats 3
step smol_inference 50 --sections inference --base $SMOL --dtype bfloat16 --window $W $HS --layers "$L1" --lengths $LENS --max-base-length 8192 --repeats 2
if [ "$DEVICE" = cuda ]; then
    step llama1b_nf4 60 --sections training,inference --base $ONEB --dtype bfloat16 --quant4 --window $W --windows $NW --batch 1 $H --layers "$LB" --lengths 4096,65536 --max-base-length 16384 --repeats 2
fi
echo "done $(date -u +%T)"
