#!/usr/bin/env bash
# A curriculum in key length on the bigram-key design. Stage 1 is cpu_2h/run.sh's (900 steps, 2 windows, 5-digit
# keys, adapter.bigram_keys=true); stage 2 keeps its data and its one LR schedule to step 3,300 (4 windows, the
# key 1-3 windows back), but asks keys of FIRST_DIGITS digits until SWITCH_STEP and 5-digit keys after. Between
# the two parts the adapter is validated on 5-digit keys (eval_5_digits_at_switch.json): what the first part taught.
#
#   bash docs/experiments/cpu_key_length/run.sh OUT_DIR FIRST_DIGITS [SWITCH_STEP]   (default 2400; PY=python)
# STAGE1=DIR starts from a copy of a finished stage 1 instead of running it (the same for every FIRST_DIGITS).
set -euo pipefail
out=$1
digits=$2
switch=${3:-2400}
PY=${PY:-python}
if [[ -n "${STAGE1:-}" ]]; then
  rm -rf "$out" && cp -r "$STAGE1" "$out"
else
  "$PY" scripts/train.py --config recipes/smollm2_135m_memory_cpu.yaml output_dir="$out" \
    adapter.forget_toward_init=true adapter.bigram_keys=true max_steps=900 max_train_minutes=40
fi
stage2=(max_steps=3300 max_train_minutes=90 eval_every=800 data.windows_per_sample=4 data.fact_window=-1
  data.natural_loss_from_window=3)
"$PY" scripts/train.py --resume "$out" --stop-at-step "$switch" "${stage2[@]}" data.passkey_digits="$digits"
"$PY" scripts/train.py --evaluate "$out" data.passkey_digits=5 | tail -n 1 > "$out/eval_5_digits_at_switch.json"
"$PY" scripts/train.py --resume "$out" data.passkey_digits=5
