#!/usr/bin/env bash
# Does the bigram recipe break through when stage 1 leaves the memory's input projections where bigram initialization
# put them? Stage 1 of cpu_seed_swap/run.sh (900 steps) with projection_lr=STAGE1_PROJECTION_LR (0: frozen) and any
# further stage-1 overrides (for example projection_anchor=5), the addressing probe of the adapter it leaves, then
# stage 2 as there (projection_lr back to lr, no anchor, unless STAGE2_OVERRIDES says otherwise) to STOP_AT_STEP.
#
#   bash docs/experiments/cpu_projection_lr/run.sh OUT_DIR SEED STAGE1_PROJECTION_LR [STOP_AT_STEP [KEY=VALUE...]]
#   (PY=python; STAGE2_MINUTES=65 is stage 2's safety net: give ~80 to reach step 3,300 in one go;
#   STAGE2_OVERRIDES="projection_anchor=5" adds KEY=VALUE overrides, space-separated, to stage 2)
# Stage 1's output is copied to OUT_DIR_stage1 before stage 2 overwrites it, for other stage 2s from the same start.
set -euo pipefail
out=$1
seed=$2
projection_lr=$3
stop_at_step=${4:-3300}
stage1_overrides=("${@:5}")
PY=${PY:-python}
stage2_minutes=${STAGE2_MINUTES:-65}
read -r -a stage2_overrides <<< "${STAGE2_OVERRIDES:-}"
"$PY" scripts/train.py --config recipes/smollm2_135m_memory_cpu.yaml output_dir="$out" adapter.forget_toward_init=true \
  adapter.bigram_keys=true max_steps=900 max_train_minutes=40 seed="$seed" projection_lr="$projection_lr" "${stage1_overrides[@]}"
"$PY" docs/experiments/cpu_2h_bigram/addressing.py "$out" > "$out/addressing_stage1.txt"
rm -rf "${out}_stage1" && cp -r "$out" "${out}_stage1"
"$PY" scripts/train.py --resume "$out" --stop-at-step "$stop_at_step" max_steps=3300 max_train_minutes="$stage2_minutes" eval_every=800 \
  data.windows_per_sample=4 data.fact_window=-1 data.natural_loss_from_window=3 projection_lr=null projection_anchor=0 \
  "${stage2_overrides[@]}"
