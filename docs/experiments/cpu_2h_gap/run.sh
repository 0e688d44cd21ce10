#!/usr/bin/env bash
# The 77-minute recipe (docs/experiments/cpu_2h/run.sh), then a stage on long reads: every sample's last window
# comes after 0 to 64 extra essay windows (drawn per micro-batch), read from their cached branch inputs
# (data.gap_windows), so the passkey is 1 to 67 windows back; the essays' last window also comes after the gap.
# Fixed step count; max_train_minutes is only a safety net.
#
#   bash docs/experiments/cpu_2h_gap/run.sh [OUT_DIR]      (default outputs/cpu_2h_gap; PY=python interpreter)
#   SKIP_STAGES_1_2=1 bash docs/experiments/cpu_2h_gap/run.sh OUT_DIR   (OUT_DIR already holds the cpu_2h run)
set -euo pipefail
out=${1:-outputs/cpu_2h_gap}
PY=${PY:-python}
if [ -z "${SKIP_STAGES_1_2:-}" ]; then
  PY="$PY" bash docs/experiments/cpu_2h/run.sh "$out"
fi
"$PY" scripts/train.py --resume "$out" max_steps=4100 max_train_minutes=45 eval_every=0 data.gap_windows=64
