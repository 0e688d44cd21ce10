"""Diagnostic: loss by window on a held-out 4,096-token essay with the adapter's forget-gate bias shifted, forgetting
toward zero (as trained) and toward the learned initial weights (forget_toward_init), against the windowed base;
and the forget rate alpha the memory actually computes (README, Evaluation).

python docs/experiments/cpu_curriculum/forget_probe.py outputs/cpu_long6
"""

import sys

import torch
import torch.nn.functional as F

from titans_adapter import load_adapter, load_base_model
from titans_adapter.evaluation import load_corpus, perplexity_documents

torch.set_num_threads(2)
base, tok = load_base_model("default")
name, ids = perplexity_documents(tok, load_corpus(None), 4096, 1)[0]
model = load_adapter(base, sys.argv[1])
memory = next(iter(model.memories.values())).memory
forget_bias = memory.to_gates.bias.view(3, -1)[2]
learned = forget_bias.detach().clone()
alphas: list[float] = []
compute_gates = memory.momentum_and_forget
window = model.config.window
pieces = [ids[None, w * window : (w + 1) * window] for w in range(len(ids) // window)]


def recording(gate_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    eta, alpha = compute_gates(gate_logits)
    alphas.append(alpha.mean().item())
    return eta, alpha


def window_loss(logits: torch.Tensor, piece: torch.Tensor) -> float:
    return F.cross_entropy(logits[0, :-1], piece[0, 1:]).item()


def show(label: str, losses: list[float]) -> None:
    print(f"{label:<44} {' '.join(f'{x:5.2f}' for x in losses)} | mean of windows 8+ {sum(losses[8:]) / len(losses[8:]):.3f}")


memory.momentum_and_forget = recording
print(f"{name}: {len(pieces)} windows of {window}; loss by window")
for toward_init, shifts in [(False, [0.0, 10.0, 20.0]), (True, [5.0, 10.0, 12.0, 15.0, 20.0])]:
    memory.config.forget_toward_init = toward_init
    for shift in shifts:
        alphas.clear()
        with torch.no_grad():
            forget_bias.copy_(learned + shift)
            state, losses = None, []
            for piece in pieces:
                out = model(piece, memory_state=state)
                state = out.memory_state
                losses.append(window_loss(out.logits, piece))
            norm = next(iter(state.layers.values())).weights[0].norm().item()
        target = "initial weights" if toward_init else "zero"
        show(f"toward {target}, bias +{shift:g} (alpha {sum(alphas) / len(alphas):.2g})", losses)
        print(f"{'':<44} first memory weight norm at the end {norm:.1f}")
model.unload()
with torch.no_grad():
    show("windowed base (no memory)", [window_loss(base(piece).logits, piece) for piece in pieces])
