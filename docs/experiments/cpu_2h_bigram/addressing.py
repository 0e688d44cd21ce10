"""Where does a passkey digit's query point? A first-order probe of the memory's addressing (README, Training).

For held-out passkeys (the training validation's), the query that must produce digit i is the one at the token
before it in the answer. Among every key written before the question's window, this ranks by dot product (summed
over heads, of the memory's first-layer features at its learned initial weights, silu(q W_1) . silu(k W_1): a
write of key k changes the read at q through W_2 in proportion to that) the key that holds digit i in the fact
("next": what an answer needs, and what bigram keys name by the digit before it) and the key that holds digit i-1
("same": a state like the query's own), taking the better of the key's two occurrences in the fact. The first
layer's own updates are left out, so this shows where the projections point, not the whole read.

python docs/experiments/cpu_2h_bigram/addressing.py RUN_DIR [--samples 100] [--adapter RUN_DIR/checkpoints/step-N]
(--adapter probes another adapter directory of the run, such as a checkpoint, with the run's recipe.)
Prints, per digit, how often each key is the top match and its median rank, for the untrained adapter (a fresh
initialization of the run's config) and for the trained one.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from titans_adapter import TitansConfig, retrofit
from titans_adapter.data import PackedSplit
from titans_adapter.recipe import load_recipe
from titans_adapter.training import VAL_SEED_OFFSET, load_frozen_base, load_splits, load_trained, recipe_sample


def branch_queries_and_keys(model, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of the memory's queries and written keys for ids (B, T): each (B, H, T, features), keys as written."""
    (branch,) = model.memories.values()
    memory, inputs = branch.memory, []
    hook = memory.register_forward_pre_hook(
        lambda _, args, kwargs: inputs.append((args[0], kwargs["input_scale"])), with_kwargs=True
    )
    with torch.no_grad():
        model(ids, return_logits=False)
        hook.remove()
        x, scale = torch.cat([a for a, _ in inputs], dim=1), inputs[0][1]  # (B, T, dim): every window's branch input
        q, k, _, theta, _ = memory.project(x, scale)
        k, _, _ = memory.written_keys(x, k, theta, memory.initial_state(x.shape[0]), input_scale=scale)
    if len(memory.initial_weights) > 1:  # compare in the memory's first-layer feature space: (B, H, T, hidden)
        first = memory.initial_weights[0].detach()
        q, k = F.silu(q @ first), F.silu(k @ first)
    return q, k


def digit_positions(sample) -> list[list[int]]:
    """Per occurrence of the key in the fact (it is written twice), the positions of its digits."""
    answer = sample.ids[sample.answer_span[0] : sample.answer_span[1]].tolist()
    f0, f1 = sample.fact_span
    fact = sample.ids[f0:f1].tolist()
    starts = [i for i in range(len(fact)) if fact[i : i + len(answer)] == answer]
    return [[f0 + start + i for i in range(len(answer))] for start in starts]


def probe(model, samples, window: int) -> dict[str, np.ndarray]:
    """Top-1 share and median rank, per digit, of the 'next' and 'same' keys for the digit's query."""
    a0, a1 = samples[0].answer_span
    written = a0 // window * window  # keys of windows before the question's are in the memory when it is asked
    ranks = {"next": [], "same": []}
    for s in samples:
        q, k = branch_queries_and_keys(model, torch.from_numpy(s.ids[None, :a1]))
        digits = digit_positions(s)
        per_sample = {"next": [], "same": []}
        for i in range(a1 - a0):
            scores = torch.einsum("hd,htd->t", q[0, :, a0 - 1 + i], k[0, :, :written])  # (written,)
            order = scores.argsort(descending=True).tolist()
            per_sample["next"].append(min(order.index(d[i]) for d in digits))  # the better of the two occurrences
            per_sample["same"].append(min(order.index(d[i] - 1) for d in digits))
        for name in ranks:
            ranks[name].append(per_sample[name])
    out = {}
    for name, r in ranks.items():
        r = np.array(r)  # (samples, digits)
        out[f"{name}_top1"] = (r == 0).mean(0)
        out[f"{name}_median_rank"] = np.median(r, axis=0)
    return out


def load_passkey_run(run: str) -> tuple[dict, Any, Any, PackedSplit]:
    """The run's recipe asking passkeys only, its frozen base and tokenizer, and its validation split (on 2 threads)."""
    torch.set_num_threads(2)
    recipe = load_recipe(Path(run) / "recipe.yaml", ["data.synthetic_tasks=[passkey]"])
    base, tokenizer = load_frozen_base(recipe, "cpu", "fp32")
    _, val = load_splits(recipe, tokenizer)
    return recipe, base, tokenizer, val


def held_out_passkey(recipe: dict, val: PackedSplit, tokenizer, index: int):
    """The training validation's passkey number index (the same samples its synthetic accuracy is measured on)."""
    return recipe_sample(recipe, val, tokenizer, recipe["seed"] + VAL_SEED_OFFSET, index)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--adapter", help="adapter directory to probe (default: the run's own)")
    args = parser.parse_args()
    recipe, base, tokenizer, val = load_passkey_run(args.run)
    window = recipe["adapter"]["window"]
    samples = [held_out_passkey(recipe, val, tokenizer, i) for i in range(args.samples)]
    written = samples[0].answer_span[0] // window * window
    print(f"{args.samples} held-out passkeys; keys ranked among the {written} written before the question's window")
    print("| adapter | key | digits 1 / 2 / 3 / 4 / 5: top match | median rank |")
    print("| --- | --- | --- | --- |")
    torch.manual_seed(recipe["seed"])
    for name, model in [
        ("untrained", lambda: retrofit(base, TitansConfig.from_dict(recipe["adapter"]))),
        ("trained", lambda: load_trained(base, args.adapter or args.run)),
    ]:
        model = model().eval()
        result = probe(model, samples, window)
        model.unload()
        for key in ("next", "same"):
            top1 = " / ".join(f"{100 * x:.0f}" for x in result[f"{key}_top1"])
            rank = " / ".join(f"{x:.0f}" for x in result[f"{key}_median_rank"])
            print(f"| {name} | {key} | {top1}% | {rank} |")


if __name__ == "__main__":
    main()
