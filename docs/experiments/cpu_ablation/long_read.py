"""Long-read check for the ablation table: loss of each adapter on a held-out 4,096-token essay read window by
window (32 windows of 128, 31 past the first), memory carried, against the windowed base (README, Training).

python docs/experiments/cpu_ablation/long_read.py outputs/ablation/*/
"""

import sys

import torch
import torch.nn.functional as F

from titans_adapter import load_base_model
from titans_adapter.evaluation import load_corpus, perplexity_documents
from titans_adapter.training import load_trained

torch.set_num_threads(2)
base, tok = load_base_model("default")
name, ids = perplexity_documents(tok, load_corpus(None), 4096, 1)[0]


def losses_by_window(model, window: int, carry: bool) -> list[float]:
    state, losses = None, []
    with torch.no_grad():
        for w in range(len(ids) // window):
            piece = ids[None, w * window : (w + 1) * window]
            out = model(piece, memory_state=state) if carry else model(piece)
            state = getattr(out, "memory_state", None)
            losses.append(F.cross_entropy(out.logits[0, :-1], piece[0, 1:]).item())
    return losses


def means(losses: list[float]) -> str:
    return f"{sum(losses[1:8]) / 7:.3f} | {sum(losses[8:]) / len(losses[8:]):.3f}"


print(f"held-out essay {name}, {len(ids)} tokens\n")
print("| adapter | loss, windows 1-7 | loss, windows 8-31 |")
print("| --- | ---: | ---: |")
print(f"| windowed base | {means(losses_by_window(base, 128, carry=False))} |")
for path in sys.argv[1:]:
    model = load_trained(load_base_model("default")[0], path)  # a fresh base each time: LoRA changes it in place
    print(f"| {path.rstrip('/').split('/')[-1]} | {means(losses_by_window(model, model.config.window, carry=True))} |")
