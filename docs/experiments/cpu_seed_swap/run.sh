#!/usr/bin/env bash
# What decides the bigram recipe's stage-2 breakthrough: the adapter stage 1 leaves, or stage 2's own samples?
# Stage 1 of cpu_2h/run.sh with adapter.bigram_keys=true (900 steps) under seed STAGE1_SEED, then its stage 2 (the one
# LR schedule to step 3,300) under seed STAGE2_SEED: from step 900 on the samples, the essays' train/validation split
# and the held-out passkeys are those of a run with STAGE2_SEED from the start; the adapter (and its optimizer state)
# is STAGE1_SEED's. STOP_AT_STEP ends stage 2 early with the same LR schedule (the fork shows by step 2,400).
#
#   bash docs/experiments/cpu_seed_swap/run.sh OUT_DIR STAGE1_SEED STAGE2_SEED [STOP_AT_STEP]   (PY=python)
# STAGE1=DIR starts from a copy of a finished stage 1 of STAGE1_SEED instead of running it.
set -euo pipefail
out=$1
stage1_seed=$2
stage2_seed=$3
stop_at_step=${4:-3300}
PY=${PY:-python}
if [[ -n "${STAGE1:-}" ]]; then
  rm -rf "$out" && cp -r "$STAGE1" "$out"
else
  "$PY" scripts/train.py --config recipes/smollm2_135m_memory_cpu.yaml output_dir="$out" \
    adapter.forget_toward_init=true adapter.bigram_keys=true max_steps=900 max_train_minutes=40 seed="$stage1_seed"
fi
"$PY" scripts/train.py --resume "$out" --stop-at-step "$stop_at_step" max_steps=3300 max_train_minutes=65 eval_every=800 \
  data.windows_per_sample=4 data.fact_window=-1 data.natural_loss_from_window=3 seed="$stage2_seed"
