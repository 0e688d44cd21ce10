#!/usr/bin/env bash
# The CPU recipe continued in one command: the 15-minute recipe's design (memory after layer 8, window 128,
# forgetting toward the learned initial memory), then the curriculum's stage 2. Fixed step counts keep the
# result independent of machine load; max_train_minutes is only a safety net.
#   stage 1 (900 steps): 2 windows, the second cut to 32 tokens; 80% passkeys given in window 0 and asked right
#     after window 1 starts, 20% essays with a loss on the cut window;
#   stage 2 (2,400 steps): 4 windows, the passkey in a random earlier window (1 to 3 windows back), the same
#     essay share; evaluations every 800 steps.
#
#   bash docs/experiments/cpu_2h/run.sh [OUT_DIR [KEY=VALUE ...]]   (default outputs/cpu_2h; PY=python interpreter)
# Overrides after OUT_DIR go to stage 1 (the adapter's design is fixed from there), e.g. adapter.bigram_keys=true.
set -euo pipefail
out=${1:-outputs/cpu_2h}
PY=${PY:-python}
"$PY" scripts/train.py --config recipes/smollm2_135m_memory_cpu.yaml output_dir="$out" \
  adapter.forget_toward_init=true max_steps=900 max_train_minutes=20 "${@:2}"
"$PY" scripts/train.py --resume "$out" max_steps=3300 max_train_minutes=60 eval_every=800 \
  data.windows_per_sample=4 data.fact_window=-1 data.natural_loss_from_window=3
