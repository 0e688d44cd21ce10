"""Plot the synthetic answer loss of the GPU sweep's variants against training steps (docs/images/gpu_sweep.png)."""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

here = Path(__file__).parent
out = Path(sys.argv[1]) if len(sys.argv) > 1 else here.parents[1] / "images" / "gpu_sweep.png"
fig, ax = plt.subplots(figsize=(7, 4))
for run in sorted(p for p in here.iterdir() if (p / "metrics.jsonl").is_file()):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["type"] == "train"]
    steps = [r["step"] for r in train]
    loss = [r["loss_synthetic"] for r in train]
    smooth = [sum(loss[max(0, i - 3) : i + 1]) / len(loss[max(0, i - 3) : i + 1]) for i in range(len(loss))]
    ax.plot(steps, smooth, label=run.name)
ax.axhline(2.3026, color="gray", linestyle=":", label="chance for a digit (ln 10)")
ax.set_xlabel("training step (batch 4)")
ax.set_ylabel("passkey answer loss (nats/token, smoothed)")
ax.set_title("GPU sweep: which memory design starts to recall (5.5 min each, one H200)")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(out, dpi=110)
print(f"wrote {out}")
