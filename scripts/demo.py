"""Main job on the embedded default model: retrofit it, read a long essay window by window, compare with the base.

    python scripts/demo.py [--window 256] [--windows 4] [--layers 8]

Prints parameter counts, the loss per window for the base with full attention, the base windowed (no
memory), and the retrofitted model, and checks that the untrained retrofit equals the base.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from titans_adapter import TitansConfig, load_base_model, retrofit
from titans_adapter.data import load_essays


def window_losses(logits: torch.Tensor, ids: torch.Tensor, window: int) -> list[float]:
    """Mean next-token loss of the tokens predicted inside each window. logits (1, T, V), ids (1, T)."""
    losses = F.cross_entropy(logits[0, :-1].float(), ids[0, 1:], reduction="none")  # (T-1,)
    return [losses[max(w - 1, 0) : w + window - 1].mean().item() for w in range(0, ids.shape[1], window)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--layers", type=int, nargs="+", default=[8])
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--windows", type=int, default=4)
    args = parser.parse_args()

    torch.manual_seed(0)
    started = time.time()
    base, tokenizer = load_base_model(args.model)
    essays = load_essays()
    text = max(essays.values(), key=len)
    length = args.window * args.windows
    ids = tokenizer(text, return_tensors="pt").input_ids[:, :length]
    print(
        f"base: {base.config.name_or_path} ({base.config.model_type}, {base.config.num_hidden_layers} layers), "
        f"input: {ids.shape[1]} tokens = {args.windows} windows of {args.window}"
    )

    with torch.no_grad():
        full = base(ids).logits
        windowed_base = torch.cat([base(ids[:, s : s + args.window]).logits for s in range(0, ids.shape[1], args.window)], 1)
        model = retrofit(base, TitansConfig(layers=args.layers, window=args.window))
        retro = model(ids, labels=ids)
        covering = retrofit(model.unload(), TitansConfig(layers=args.layers, window=ids.shape[1]))(ids).logits

    counts = model.parameter_counts()
    print(
        f"parameters: adapter {counts['trainable']:,} trainable, base {counts['base']:,} frozen "
        f"({100 * counts['trainable'] / counts['base']:.2f}% of the base)"
    )
    print(f"\n{'window':>6} | {'base full attn':>14} | {'base windowed':>13} | {'retrofit (init)':>15}")
    rows = zip(*(window_losses(x, ids, args.window) for x in (full, windowed_base, retro.logits)))
    for w, (a, b, c) in enumerate(rows):
        print(f"{w:>6} | {a:>14.4f} | {b:>13.4f} | {c:>15.4f}")
    same_windowed = (retro.logits - windowed_base).abs().max().item()
    same_full = (covering - full).abs().max().item()
    print(
        f"\nmax |logit difference| at init: retrofit vs windowed base {same_windowed:.2e}; "
        f"retrofit with one covering window vs full-attention base {same_full:.2e}"
    )
    ok = same_windowed < 1e-4 and same_full < 1e-4
    print(f"identity at init: {'OK' if ok else 'FAILED'}   ({time.time() - started:.0f} s)")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
