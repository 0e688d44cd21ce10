#!/usr/bin/env bash
# Train recipe variants side by side (one train.py process each; on one GPU they share it) and print a
# table of their final evaluations. Each line of VARIANTS is "name key=value ...".
# PARALLEL=0 runs them one after another (a CPU: each run gets the whole machine and its own time budget).
#
#   bash scripts/sweep.sh VARIANTS OUT_DIR [key=value ...]      (the extra overrides apply to every variant)
#   bash scripts/sweep.sh docs/experiments/gpu_sweep/variants.txt outputs/sweep max_train_minutes=5.5
#   PARALLEL=0 bash scripts/sweep.sh docs/experiments/cpu_ablation/variants.txt outputs/ablation
set -u
variants=$1 out=$2; shift 2
PY=${PY:-python3}
mkdir -p "$out"
while read -r name args; do
  [ -z "$name" ] && continue
  # shellcheck disable=SC2086
  "$PY" scripts/train.py --config "${CONFIG:-recipes/smollm2_135m_memory_cpu.yaml}" output_dir="$out/$name" $args "$@" \
    >"$out/$name.log" 2>&1 &
  if [ "${PARALLEL:-1}" = 0 ]; then wait; else sleep 2; fi  # sleep: stagger the model loads
done <"$variants"
wait
"$PY" - "$out" <<'PYEOF'
import json, sys
from pathlib import Path

rows = []
for run in sorted(p for p in Path(sys.argv[1]).iterdir() if (p / "eval.json").is_file()):
    e = json.loads((run / "eval.json").read_text())
    fmt = lambda xs: " / ".join(f"{x:.3f}" for x in xs)  # noqa: E731
    rows.append(
        f"| {run.name} | {e.get('steps', '')} | {100 * e['synthetic_token_accuracy']:.1f}% | {100 * e['reset_synthetic_token_accuracy']:.1f}% "
        f"| {100 * e['base_synthetic_token_accuracy']:.1f}% | {fmt(e['val_loss_by_window'])} | {fmt(e['reset_val_loss_by_window'])} "
        f"| {fmt(e['base_val_loss_by_window'])} |"
    )
print("| variant | steps | answer tokens right | memory reset | windowed base | val loss by window | memory reset | windowed base |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
print("\n".join(rows))
PYEOF
