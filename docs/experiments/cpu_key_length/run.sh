#!/usr/bin/env bash
# A curriculum in key length on the bigram-key design. Stage 1 is cpu_2h/run.sh's (900 steps, 2 windows, 5-digit
# keys, adapter.bigram_keys=true); stage 2 keeps its data and its one LR schedule to step 3,300 (4 windows, the
# key 1-3 windows back), but asks keys of other lengths in parts: SCHEDULE is DIGITS:UNTIL_STEP pairs, comma-separated
# ("8:2400" = 8-digit keys until step 2,400; "2:1300,3:1800,4:2300" = two, then three, then four digits), and
# 5-digit keys after the last. At each switch the adapter is validated on 5-digit keys
# (eval_5_digits_at_<step>.json): what the part before taught.
#
#   bash docs/experiments/cpu_key_length/run.sh OUT_DIR SCHEDULE   (PY=python)
# STAGE1=DIR starts from a copy of a finished stage 1 instead of running it (the same for every SCHEDULE).
set -euo pipefail
out=$1
schedule=$2
PY=${PY:-python}
if [[ -n "${STAGE1:-}" ]]; then
  rm -rf "$out" && cp -r "$STAGE1" "$out"
else
  "$PY" scripts/train.py --config recipes/smollm2_135m_memory_cpu.yaml output_dir="$out" \
    adapter.forget_toward_init=true adapter.bigram_keys=true max_steps=900 max_train_minutes=40
fi
stage2=(max_steps=3300 max_train_minutes=90 eval_every=800 data.windows_per_sample=4 data.fact_window=-1
  data.natural_loss_from_window=3)
IFS=, read -ra parts <<< "$schedule"
for part in "${parts[@]}"; do
  digits=${part%%:*}
  until_step=${part##*:}
  "$PY" scripts/train.py --resume "$out" --stop-at-step "$until_step" "${stage2[@]}" data.passkey_digits="$digits"
  "$PY" scripts/train.py --evaluate "$out" data.passkey_digits=5 | tail -n 1 > "$out/eval_5_digits_at_$until_step.json"
done
"$PY" scripts/train.py --resume "$out" "${stage2[@]}" data.passkey_digits=5
