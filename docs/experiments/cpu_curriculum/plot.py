"""Plot a CPU curriculum run: the passkey answer loss against steps, and held-out accuracy of each answer digit
at every evaluation.

    python plot.py                                   # this folder's run -> docs/images/cpu_curriculum.png
    python plot.py OUT.png METRICS.jsonl [STEP ...]  # another run; STEPs: first step of each stage after the first
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

here = Path(__file__).parent
out = Path(sys.argv[1]) if len(sys.argv) > 1 else here.parents[1] / "images" / "cpu_curriculum.png"
metrics = Path(sys.argv[2]) if len(sys.argv) > 2 else here / "metrics.jsonl"
rows = [json.loads(line) for line in metrics.read_text().splitlines()]
train = [r for r in rows if r["type"] == "train" and r["loss_synthetic"] > 0]  # 0 = no synthetic sample in the batch
evals = [r for r in rows if r["type"] == "eval" and "synthetic_accuracy_by_position" in r]
stages = [int(s) for s in sys.argv[3:]] if len(sys.argv) > 2 else [int(s) for s in (here / "stages.txt").read_text().split()]

fig, (loss_ax, acc_ax) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
steps = [r["step"] for r in train]
loss = [r["loss_synthetic"] for r in train]
smooth = [sum(loss[max(0, i - 9) : i + 1]) / len(loss[max(0, i - 9) : i + 1]) for i in range(len(loss))]
loss_ax.plot(steps, smooth, label="passkey answer loss (100-step mean)")
loss_ax.axhline(2.3026, color="gray", linestyle=":", label="chance for a digit (ln 10)")
loss_ax.set_ylabel("nats per answer token")
for ax in (loss_ax, acc_ax):
    for step in stages:
        ax.axvline(step, color="black", alpha=0.3, linewidth=0.8)
eval_steps = [r["step"] for r in evals]
for digit in range(5):
    acc_ax.plot(eval_steps, [r["synthetic_accuracy_by_position"][digit] for r in evals], marker="o", label=f"digit {digit + 1}")
acc_ax.plot(eval_steps, [r["synthetic_exact"] for r in evals], marker="s", color="black", label="whole key (exact)")
acc_ax.axhline(0.1, color="gray", linestyle=":")
acc_ax.set_ylabel("held-out accuracy")
acc_ax.set_xlabel("training step (batch 4); vertical lines: a new curriculum stage")
acc_ax.legend(fontsize=7, ncol=3)
loss_ax.legend(fontsize=8)
loss_ax.set_title("SmolLM2-135M + memory at layer 8, 2-core CPU: recalling a 5-digit passkey")
fig.tight_layout()
fig.savefig(out, dpi=110)
print(f"wrote {out}")
