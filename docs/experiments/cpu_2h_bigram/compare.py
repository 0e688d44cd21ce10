"""Up to five runs of docs/experiments/cpu_2h/run.sh side by side: the passkey answer loss against steps, and
held-out accuracy of each answer digit at every evaluation, with a table of the evaluations on stdout.
(A run with data.answer_end averages its answer loss over the five digits and the '.' after them; a run with other key
lengths, cpu_key_length/run.sh, averages over its keys' digits, and only its 5-digit evaluations are plotted.)

    python compare.py OUT.png NAME=METRICS.jsonl NAME=METRICS.jsonl [NAME=METRICS.jsonl ...]   (at most five)
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

out = Path(sys.argv[1])
runs = {name: Path(path) for name, path in (arg.split("=", 1) for arg in sys.argv[2:])}
if not 1 <= len(runs) <= 5:
    sys.exit(f"compare.py plots one to five runs (NAME=METRICS.jsonl), got {len(runs)}.")

fig, axes = plt.subplots(1 + 5, 1, figsize=(7, 11), sharex=True)
print("| run | step | digits right | digits 1 / 2 / 3 / 4 / 5 | exact |")
print("| --- | ---: | ---: | --- | ---: |")
for (name, path), color in zip(runs.items(), ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    train = [r for r in rows if r["type"] == "train" and r["loss_synthetic"] > 0]  # 0 = no passkey in the batch
    evals = [r for r in rows if r["type"] == "eval" and "synthetic_accuracy_by_position" in r]
    loss = [r["loss_synthetic"] for r in train]
    smooth = [sum(loss[max(0, i - 9) : i + 1]) / len(loss[max(0, i - 9) : i + 1]) for i in range(len(loss))]
    axes[0].plot([r["step"] for r in train], smooth, color=color, label=name)
    five_digit_evals = [r for r in evals if len(r["synthetic_accuracy_by_position"]) == 5]
    for digit in range(5):
        axes[1 + digit].plot(
            [r["step"] for r in five_digit_evals],
            [r["synthetic_accuracy_by_position"][digit] for r in five_digit_evals],
            marker="o",
            color=color,
        )
    for r in evals:
        digits = " / ".join(f"{100 * a:.0f}" for a in r["synthetic_accuracy_by_position"])
        print(
            f"| {name} | {r['step']} | {100 * r['synthetic_token_accuracy']:.1f}% | {digits}% | {100 * r['synthetic_exact']:.0f}% |"
        )
axes[0].axhline(2.3026, color="gray", linestyle=":", label="chance (ln 10)")
axes[0].set_ylabel("answer loss\n(100-step mean)")
axes[0].legend(fontsize=8)
for digit in range(5):
    axes[1 + digit].axhline(0.1, color="gray", linestyle=":")
    axes[1 + digit].set_ylim(0, 1.02)
    axes[1 + digit].set_ylabel(f"digit {digit + 1}")
axes[-1].set_xlabel("training step (batch 4); held-out passkeys at each evaluation")
axes[0].set_title("Passkey recall through the memory, 2-core CPU")
fig.tight_layout()
fig.savefig(out, dpi=100)
print(f"wrote {out}")
