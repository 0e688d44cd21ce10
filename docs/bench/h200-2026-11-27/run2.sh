set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl >"$OUT/pip.log" 2>&1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
python3 -c "import torch; print(torch.cuda.memory_stats().get('allocated_bytes.all.peak'), torch.cuda.get_allocator_backend())" 
B="python3 scripts/bench.py --device cuda"
timeout 45 $B --json $OUT/smol_inference.json --sections inference --base smollm2-135m --dtype bfloat16 --window 512 --lengths 4096,16384,65536,262144 --max-base-length 8192 --repeats 2 2>&1 | grep -v -i warn | tail -12
timeout 150 $B --json $OUT/smol_ro.json --sections training --base smollm2-135m --dtype bfloat16 --window 512 --windows 4 --batch 4 --layers 8 --compile reduce-overhead --repeats 5 2>&1 | grep -v -i warn | tail -8
