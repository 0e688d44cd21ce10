#!/usr/bin/env bash
# The overlap recipe with the read loss in stage 1 only: stage 1 with read_loss_weight=1 (900 steps), stage 2 without
# it, stopped at step 1,500 of its 3,300-step schedule (it broke through by ~1,100), the gap stage (700 steps with up
# to 64 gap windows) and the overlap stage. Measured: README, "Gap windows in stage 2, and the read loss in stage 1
# only" (there stage 2 was stopped by hand at 1,519, so the later stages ran to 2,219 and 2,369).
#
#   bash docs/experiments/read_loss/run_stage1_only.sh [OUT_DIR]   (default outputs/read_loss_stage1_only; PY=python; LAST_MINUTES=6)
# OUT_DIR_stage2 and OUT_DIR_gap keep copies of the adapter after stage 2 and after the gap stage.
set -euo pipefail
out=${1:-outputs/read_loss_stage1_only}
PY=${PY:-python}
"$PY" scripts/train.py --config recipes/smollm2_135m_memory_cpu.yaml output_dir="$out" adapter.forget_toward_init=true \
  adapter.bigram_keys=true read_loss_weight=1 max_steps=900 max_train_minutes=20
"$PY" scripts/train.py --resume "$out" --stop-at-step 1500 max_steps=3300 max_train_minutes=60 eval_every=500 \
  data.windows_per_sample=4 data.fact_window=-1 data.natural_loss_from_window=3 read_loss_weight=0
rm -rf "${out}_stage2" && cp -r "$out" "${out}_stage2"
"$PY" scripts/train.py --resume "$out" max_steps=2200 max_train_minutes=45 eval_every=0 data.gap_windows=64
rm -rf "${out}_gap" && cp -r "$out" "${out}_gap"
"$PY" scripts/train.py --resume "$out" max_steps=2350 max_train_minutes="${LAST_MINUTES:-6}" eval_every=0 \
  adapter.overlap=32 data.fact_across_windows=true data.answer_end=true "data.question_formats=[plain,qa]" \
  data.natural_loss_from_window=0 data.synthetic_fraction=0.6 eval_samples=4 eval_synthetic_samples=40
