#!/usr/bin/env bash
# The overlap recipe (README, "Reading with an overlap"): stages 1-3 of run.sh with stage 3 stopped at step 4000, then
# one stage that reads with a 32-token overlap and merges stages 4 and 5 (answer end, two question layouts, essays on
# every window) with facts that may cross a window boundary.
# What was measured: stages 1-2 (77.2 min) and stage 3 ran as in run.sh (max_steps=4100); the adapter was taken from
# stage 3's step-4000 checkpoint (30 min 15 s into its training loop, ~32.4 min with set-up), then the last stage ran:
# with LAST_MINUTES=6 (the default here) 67 steps, 8 min 21 s with set-up and its evaluation: ~1 h 58.0 min in all;
# with LAST_MINUTES=8, 89 steps, 12 min 45 s (full built-in evaluation): ~2 h 2.3 min. Here stage 3 says
# max_steps=4000, so its cosine schedule reaches the same floor 100 steps sooner: a difference that was not measured.
#
#   bash docs/experiments/cpu_2h_bigram/run_overlap.sh [OUT_DIR]   (default outputs/cpu_2h_bigram; PY=python; LAST_MINUTES=6)
set -euo pipefail
out=${1:-outputs/cpu_2h_bigram}
PY=${PY:-python}
PY="$PY" bash docs/experiments/cpu_2h/run.sh "$out" adapter.bigram_keys=true
rm -rf "${out}_ov" && cp -r "$out" "${out}_ov"
"$PY" scripts/train.py --resume "${out}_ov" max_steps=4000 max_train_minutes=45 eval_every=0 data.gap_windows=64
"$PY" scripts/train.py --resume "${out}_ov" max_steps=4150 max_train_minutes="${LAST_MINUTES:-6}" eval_every=0 \
  adapter.overlap=32 data.fact_across_windows=true data.answer_end=true "data.question_formats=[plain,qa]" \
  data.natural_loss_from_window=0 data.synthetic_fraction=0.6 eval_samples=4 eval_synthetic_samples=40
