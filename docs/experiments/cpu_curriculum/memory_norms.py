"""Memory weight norms after each window of a 2,048-token held-out essay, for each adapter given (docs: README, Evaluation).

python docs/experiments/cpu_curriculum/memory_norms.py outputs/cpu_long4 outputs/cpu_long6
"""

import sys

import torch

from titans_adapter import load_adapter, load_base_model
from titans_adapter.evaluation import load_corpus, perplexity_documents

torch.set_num_threads(2)
base, tok = load_base_model("default")
docs = load_corpus(None)
name, ids = perplexity_documents(tok, docs, 2048, 1)[0]
for path in sys.argv[1:]:
    model = load_adapter(base, path)
    window, state, rows = model.config.window, None, []
    with torch.no_grad():
        for w in range(len(ids) // window):
            out = model(ids[None, w * window : (w + 1) * window], memory_state=state, return_logits=False)
            state = out.memory_state
            layer = next(iter(state.layers.values()))
            rows.append(" ".join(f"{x.norm().item():.1f}" for x in layer.weights))  # one norm per memory MLP layer
    print(path, name)
    for w, r in enumerate(rows):
        print(f"  after window {w}: memory weight norms {r}")
    model.unload()
