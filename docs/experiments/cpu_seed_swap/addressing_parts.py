"""Which of the stage-1 adapter's parameters moved the passkey digits' queries off their keys?

addressing.py ranks, for the query that must produce digit i, the fact's digit-i key among all keys written before
the question's window. This runs that probe on hybrids of the run's initialization and its trained adapter: the
trained adapter with one part put back to its initial value, and the initialization with only that part trained.
Parts: the query rows of to_qkv together with the bigram context projection (they start equal), the key rows of
to_qkv, the memory's first-layer initial weights (the probe compares in their feature space), the input norm.

python docs/experiments/cpu_seed_swap/addressing_parts.py RUN_DIR [--samples 100]
The initialization is rebuilt as train.py builds it (torch.manual_seed(seed), then the base, then the retrofit);
the cosine between each initial and trained tensor is printed first, as a check that it is the run's own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cpu_2h_bigram"))
from addressing import probe  # noqa: E402

from titans_adapter import TitansConfig, retrofit  # noqa: E402
from titans_adapter.recipe import load_recipe  # noqa: E402
from titans_adapter.training import VAL_SEED_OFFSET, load_frozen_base, load_splits, load_trained, recipe_sample  # noqa: E402


def part_slices(layer: int, heads_dim: int) -> dict[str, list[tuple[str, slice]]]:
    """Each part as (parameter name, rows) pairs; rows slice the parameter's first dimension."""
    memory = f"memories.{layer}.memory"
    every = slice(None)
    return {
        "query + context": [(f"{memory}.to_qkv.weight", slice(0, heads_dim)), (f"{memory}.to_context_key.weight", every)],
        "key": [(f"{memory}.to_qkv.weight", slice(heads_dim, 2 * heads_dim))],
        "first layer": [(f"{memory}.initial_weights.0", every)],
        "norm": [(f"memories.{layer}.norm.weight", every)],
    }


def mixed(state: dict[str, torch.Tensor], other: dict[str, torch.Tensor], part) -> dict[str, torch.Tensor]:
    """A copy of state with the part's rows taken from other."""
    out = {name: value.clone() for name, value in state.items()}
    for name, rows in part:
        out[name][rows] = other[name][rows]
    return out


def load(model, state: dict[str, torch.Tensor]) -> None:
    """Put state's values into the model's adapter parameters, in place."""
    params = model.adapter_parameters()
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--samples", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(2)
    recipe = load_recipe(Path(args.run) / "recipe.yaml", ["data.synthetic_tasks=[passkey]"])
    torch.manual_seed(recipe["seed"])
    base, tokenizer = load_frozen_base(recipe, "cpu", "fp32")
    config = TitansConfig.from_dict(recipe["adapter"])
    model = retrofit(base, config)
    initial = {n: p.detach().clone() for n, p in model.adapter_parameters().items()}
    model.unload()
    model = load_trained(base, args.run).eval()
    trained = {n: p.detach().clone() for n, p in model.adapter_parameters().items()}
    print("| parameter | cosine(initial, trained) | relative change |")
    print("| --- | ---: | ---: |")
    for name, value in initial.items():
        if value.norm() == 0:  # the output gates start at zero: no direction to compare
            print(f"| {name} | (starts at 0) | (starts at 0) |")
            continue
        cosine = F.cosine_similarity(value.flatten(), trained[name].flatten(), dim=0).item()
        change = ((trained[name] - value).norm() / value.norm()).item()
        print(f"| {name} | {cosine:.3f} | {change:.3f} |")

    _, val = load_splits(recipe, tokenizer)
    window = recipe["adapter"]["window"]
    samples = [recipe_sample(recipe, val, tokenizer, recipe["seed"] + VAL_SEED_OFFSET, i) for i in range(args.samples)]
    (layer,) = config.layers
    parts = part_slices(layer, config.num_heads * config.head_dim)
    print(f"\n{args.samples} held-out passkeys; median rank of the fact's digit-i key for digit i's query")
    print("| adapter | digits 1 / 2 / 3 / 4 / 5 |")
    print("| --- | --- |")
    variants = [("trained", trained), ("initial", initial)]
    variants += [(f"trained, {name} initial", mixed(trained, initial, part)) for name, part in parts.items()]
    variants += [(f"initial, {name} trained", mixed(initial, trained, part)) for name, part in parts.items()]
    for label, state in variants:
        load(model, state)
        rank = probe(model, samples, window)["next_median_rank"]
        print(f"| {label} | {' / '.join(f'{x:.0f}' for x in rank)} |", flush=True)


if __name__ == "__main__":
    main()
