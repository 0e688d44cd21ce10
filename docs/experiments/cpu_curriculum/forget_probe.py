"""Diagnostic: loss by window on a held-out 2,048-token essay with the adapter's forget-gate bias shifted,
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
name, ids = perplexity_documents(tok, load_corpus(None), 2048, 1)[0]
model = load_adapter(base, sys.argv[1])
memory = next(iter(model.memories.values())).memory
forget_bias = memory.to_gates.bias.view(3, -1)[2]
learned = forget_bias.detach().clone()
alphas: list[float] = []
compute_gates = memory.momentum_and_forget


def recording(gate_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    eta, alpha = compute_gates(gate_logits)
    alphas.append(alpha.mean().item())
    return eta, alpha


memory.momentum_and_forget = recording
window = model.config.window
for shift in [0.0, 10.0, 20.0]:
    alphas.clear()
    with torch.no_grad():
        forget_bias.copy_(learned + shift)
        state, losses, norms = None, [], []
        for w in range(len(ids) // window):
            piece = ids[None, w * window : (w + 1) * window]
            out = model(piece, memory_state=state)
            state = out.memory_state
            losses.append(F.cross_entropy(out.logits[0, :-1], piece[0, 1:]).item())
            norms.append(next(iter(state.layers.values())).weights[0].norm().item())
    print(
        f"forget bias +{shift}: alpha from the bias alone {torch.sigmoid(forget_bias).mean():.4f}, computed alpha mean"
        f" {sum(alphas) / len(alphas):.3g}; loss by window {' '.join(f'{x:.2f}' for x in losses)}; first weight norm"
        f" at the end {norms[-1]:.1f}"
    )
