#!/usr/bin/env bash
# Varied number facts inside the 2-hour budget: run_overlap.sh's budget variant with named_number in place of part of
# the passkeys. Stages 1-2 as in run.sh (77.2 min measured); stage 3 with two thirds named_number (a 3-8 digit number
# under a two-word name, five sentences), answer end and both question layouts, cut at step 4000 as in the overlap
# recipe; then the overlap stage of run_overlap.sh (6 minutes) with the same task mixture.
# What was measured (README, "The number stage inside the 2-hour budget"): stages 1-2 as in run_overlap.sh (77.2 min,
# their output reused), stage 3 706 steps in 33 min 39 s with set-up and its evaluation, the last stage 8 min 49 s:
# ~1 h 59.7 min in all. Passkeys as the budget variant's, niah_number 1 of 40: the number stage is too short here.
#
#   bash docs/experiments/cpu_2h_bigram/run_named_budget.sh [OUT_DIR]   (default outputs/cpu_2h_bigram; PY=python)
set -euo pipefail
out=${1:-outputs/cpu_2h_bigram}
PY=${PY:-python}
tasks="data.synthetic_tasks=[passkey,named_number,named_number]"
PY="$PY" bash docs/experiments/cpu_2h/run.sh "$out" adapter.bigram_keys=true
rm -rf "${out}_nb" && cp -r "$out" "${out}_nb"
"$PY" scripts/train.py --resume "${out}_nb" max_steps=4000 max_train_minutes=45 eval_every=0 data.gap_windows=64 \
  "$tasks" data.synthetic_fraction=0.8 data.answer_end=true "data.question_formats=[plain,qa]"
"$PY" scripts/train.py --resume "${out}_nb" max_steps=4150 max_train_minutes=6 eval_every=0 \
  adapter.overlap=32 data.fact_across_windows=true data.answer_end=true "data.question_formats=[plain,qa]" \
  data.natural_loss_from_window=0 data.synthetic_fraction=0.6 "$tasks" eval_samples=4 eval_synthetic_samples=40
