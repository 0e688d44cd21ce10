#!/usr/bin/env bash
# The overlap recipe (run_overlap.sh, 8-minute last stage) followed by a stage of varied number facts: two thirds
# named_number (a 3-8 digit number under a two-word name, five sentences), one third passkeys, 80% synthetic samples.
# Beyond the 2-hour budget: evidence of what niah_number needs, not a recipe that meets the budget.
# What was measured (README, "Why niah_number gets nothing"): the number stage ran as two invocations of the same
# stage, 75 min (steps 4089 -> 5203, OUT_named) and then, resumed on a copy, up to 58 min (OUT_named2), which reached
# max_steps=6000 after 57 min 7 s of loop. About 2 h 2 min + 75 min + 58 min in all on the idle 2-core development CPU.
#
#   bash docs/experiments/cpu_2h_bigram/run_named.sh [OUT_DIR]   (default outputs/cpu_2h_bigram; PY=python)
set -euo pipefail
out=${1:-outputs/cpu_2h_bigram}
PY=${PY:-python}
LAST_MINUTES=8 PY="$PY" bash docs/experiments/cpu_2h_bigram/run_overlap.sh "$out"
number_stage=(eval_every=0 "data.synthetic_tasks=[passkey,named_number,named_number]" data.synthetic_fraction=0.8)
rm -rf "${out}_ov_named" && cp -r "${out}_ov" "${out}_ov_named"
"$PY" scripts/train.py --resume "${out}_ov_named" max_steps=6000 max_train_minutes=75 "${number_stage[@]}"
rm -rf "${out}_ov_named2" && cp -r "${out}_ov_named" "${out}_ov_named2"
"$PY" scripts/train.py --resume "${out}_ov_named2" max_steps=6000 max_train_minutes=58 "${number_stage[@]}"
