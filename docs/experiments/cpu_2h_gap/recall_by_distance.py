"""Held-out passkey recall against the distance between key and question, for trained runs (README, Training).

The training validation's passkeys (held-out essays, the key 1-3 windows before the question's), with D more
held-out essay windows read right before the question's window (from their cached branch inputs), for each D.
Prints a table per run, writes the numbers as JSON and a plot of digits right against windows back. Runs
already in OUT.json and not named again are kept (and plotted); no RUN_DIR only redraws the plot.

python docs/experiments/cpu_2h_gap/recall_by_distance.py OUT.png OUT.json [RUN_DIR ...] [--gaps 0 8 ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from titans_adapter.recipe import load_recipe  # noqa: E402
from titans_adapter.training import (  # noqa: E402
    VAL_SEED_OFFSET,
    GapPool,
    load_frozen_base,
    load_splits,
    load_trained,
    recipe_sample,
)


def recall(model, samples, pool: GapPool, gap: int, batch: int) -> dict:
    """Digits right per answer position and exact matches, the key `gap` windows further back."""
    a0, a1 = samples[0].answer_span  # every passkey answer: 5 digit tokens ending the sample
    assert all(s.answer_span == (a0, a1) for s in samples)
    q_start = a0 // model.config.window * model.config.window  # the question's window
    right, exact = np.zeros(a1 - a0), 0
    for start in range(0, len(samples), batch):
        group = samples[start : start + batch]
        ids = torch.from_numpy(np.stack([s.ids for s in group]))
        with torch.no_grad():
            state = model(ids[:, :q_start], return_logits=False).memory_state
            if gap:
                hidden, last_ids = pool.fixed(len(group), gap, np.random.default_rng([start, gap]))
                state = model.write_branch_inputs(hidden, state, last_ids)
            logits = model(ids[:, q_start:a1], memory_state=state).logits
        hits = (logits[:, a0 - 1 - q_start : a1 - 1 - q_start].argmax(-1) == ids[:, a0:a1]).numpy()
        right += hits.sum(0)
        exact += int(hits.all(1).sum())
    return {
        "by_digit": (right / len(samples)).tolist(),
        "digits": float(right.mean() / len(samples)),
        "exact": exact / len(samples),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("plot")
    parser.add_argument("json")
    parser.add_argument("runs", nargs="*")
    parser.add_argument("--gaps", type=int, nargs="+", default=[0, 8, 16, 32, 64, 128])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--batch", type=int, default=25)
    args = parser.parse_args()
    previous = json.loads(Path(args.json).read_text()) if Path(args.json).is_file() else {"results": {}}
    results, own = previous["results"], previous.get("mean_own_windows_back")
    if args.runs:
        new, own = evaluate_runs(args)
        results.update(new)
        tmp = Path(f"{args.json}.tmp")
        tmp.write_text(json.dumps({"mean_own_windows_back": own, "results": results}, indent=2))
        tmp.replace(args.json)
    plot(results, own, args.plot)
    print(f"\nwrote {args.plot} and {args.json}")


def evaluate_runs(args: argparse.Namespace) -> tuple[dict, float]:
    """Recall by gap for every named run (printed as tables), and the samples' mean windows back without a gap."""
    torch.set_num_threads(2)
    recipe = load_recipe(Path(args.runs[0]) / "recipe.yaml", ["data.synthetic_tasks=[passkey]"])
    base, tokenizer = load_frozen_base(recipe, "cpu", "fp32")
    _, val = load_splits(recipe, tokenizer)
    window = recipe["adapter"]["window"]
    samples = [recipe_sample(recipe, val, tokenizer, recipe["seed"] + VAL_SEED_OFFSET, i) for i in range(args.samples)]
    # Windows between the key's window and the question's, without a gap.
    own = float(np.mean([s.answer_span[0] // window - s.fact_span[0] // window for s in samples]))
    results = {}
    for run in args.runs:
        model = load_trained(base, run).eval()
        pool = GapPool(model, val, recipe, VAL_SEED_OFFSET)
        results[run] = {gap: recall(model, samples, pool, gap, args.batch) for gap in args.gaps}
        model.unload()
        print(f"\n{run} (held-out passkeys, {args.samples}; gap windows from {len(pool.hidden)} held-out windows)")
        print("| windows back (mean) | digits right | digits 1 / 2 / 3 / 4 / 5 | exact |")
        print("| ---: | ---: | --- | ---: |")
        for gap, r in results[run].items():
            digits = " / ".join(f"{100 * x:.0f}" for x in r["by_digit"])
            print(f"| {own + gap:.1f} | {100 * r['digits']:.1f}% | {digits}% | {100 * r['exact']:.0f}% |")
    return results, own


def plot(results: dict, own: float, path: str) -> None:
    """Digits right (teacher-forced, as in training's validation) against windows back, one line per run."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for run, by_gap in results.items():
        ax.plot([own + int(g) for g in by_gap], [100 * r["digits"] for r in by_gap.values()], "o-", label=Path(run).name)
    ax.axhline(10, color="grey", ls=":", label="chance (a digit)")
    ax.set_xscale("log")
    ax.set_xlabel("windows between key and question (mean; 128 tokens each)")
    ax.set_ylabel("held-out passkey digits right (%)")
    ax.set_ylim(0, 100)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
