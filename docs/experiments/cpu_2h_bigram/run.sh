#!/usr/bin/env bash
# The best CPU recipe so far, every stage of the README's "Bigram keys" and "question_formats" sections in one script.
# Each stage resumes a copy of the one before, so every intermediate adapter stays (OUT, OUT_gap, OUT_gap_qa,
# OUT_gap_qa_essays). Measured stage by stage on the idle 2-core development CPU: 77.2 + 38.3 + 8.7 + 12.6 min = 2 h 16.8 min.
#   stages 1-2 (docs/experiments/cpu_2h/run.sh with adapter.bigram_keys=true): passkeys 1-3 windows back;
#   stage 3 (806 steps): long reads, the passkey 1 to 67 windows back (data.gap_windows=64);
#   stage 4 (120 steps): a trained "." after every answer, questions in the plain and the Question:/Answer: layout;
#   stage 5 (120 steps): 60% passkeys, the essay loss on every window (brings the in-window loss back).
#
#   bash docs/experiments/cpu_2h_bigram/run.sh [OUT_DIR]      (default outputs/cpu_2h_bigram; PY=python interpreter)
set -euo pipefail
out=${1:-outputs/cpu_2h_bigram}
PY=${PY:-python}
PY="$PY" bash docs/experiments/cpu_2h/run.sh "$out" adapter.bigram_keys=true
rm -rf "${out}_gap" && cp -r "$out" "${out}_gap"
"$PY" scripts/train.py --resume "${out}_gap" max_steps=4100 max_train_minutes=45 eval_every=0 data.gap_windows=64
rm -rf "${out}_gap_qa" && cp -r "${out}_gap" "${out}_gap_qa"
"$PY" scripts/train.py --resume "${out}_gap_qa" max_steps=4220 max_train_minutes=10 eval_every=0 \
  data.answer_end=true "data.question_formats=[plain,qa]"
rm -rf "${out}_gap_qa_essays" && cp -r "${out}_gap_qa" "${out}_gap_qa_essays"
"$PY" scripts/train.py --resume "${out}_gap_qa_essays" max_steps=4340 max_train_minutes=12 eval_every=0 \
  data.natural_loss_from_window=0 data.synthetic_fraction=0.6
