#!/usr/bin/env bash
# The overlap recipe of docs/experiments/cpu_2h_bigram/run_overlap.sh with the read loss (read_loss_weight=1) in
# every stage. With the read loss stage 2 breaks through by step ~1,600 instead of sometimes never, so it stops at
# step 2,400 of its 3,300-step schedule (the same 900-step stage 1 before it), which pays for the read loss's slower
# steps; the gap stage then runs 700 steps (to 3,100, as 3,300 -> 4,000 there) and the overlap stage as there.
# Measured (README, "The read loss through the overlap recipe"): 1 h 41.8 min; keys 1-3 windows back 90% of digits,
# but the memory forgets within ~20 windows and the evaluation's needles two or more windows back got 0 of 38.
#
#   bash docs/experiments/read_loss/run_overlap.sh [OUT_DIR]   (default outputs/read_loss_overlap; PY=python; LAST_MINUTES=6)
# OUT_DIR_stage2 keeps a copy of the adapter after stage 2.
set -euo pipefail
out=${1:-outputs/read_loss_overlap}
PY=${PY:-python}
"$PY" scripts/train.py --config recipes/smollm2_135m_memory_cpu.yaml output_dir="$out" adapter.forget_toward_init=true \
  adapter.bigram_keys=true read_loss_weight=1 max_steps=900 max_train_minutes=20
"$PY" scripts/train.py --resume "$out" --stop-at-step 2400 max_steps=3300 max_train_minutes=60 eval_every=800 \
  data.windows_per_sample=4 data.fact_window=-1 data.natural_loss_from_window=3
rm -rf "${out}_stage2" && cp -r "$out" "${out}_stage2"
"$PY" scripts/train.py --resume "$out" max_steps=3100 max_train_minutes=45 eval_every=0 data.gap_windows=64
"$PY" scripts/train.py --resume "$out" max_steps=3250 max_train_minutes="${LAST_MINUTES:-6}" eval_every=0 \
  adapter.overlap=32 data.fact_across_windows=true data.answer_end=true "data.question_formats=[plain,qa]" \
  data.natural_loss_from_window=0 data.synthetic_fraction=0.6 eval_samples=4 eval_synthetic_samples=40
