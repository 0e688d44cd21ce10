"""Retrofit a frozen base model with Titans memory and save the (untrained) adapter.

python scripts/retrofit.py --model default --layers 8 --window 512 --out adapters/smollm2-mem
python scripts/retrofit.py --model path/or/hub-id --layers 4 12 --chunk-size 32 --out adapters/x
"""

from __future__ import annotations

import argparse

from titans_adapter import TitansConfig, load_base_model, retrofit
from titans_adapter.cli import run_script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="'default' (embedded SmolLM2-135M), a local dir or a hub id")
    parser.add_argument("--out", required=True, help="adapter directory to write")
    parser.add_argument("--layers", type=int, nargs="+", default=[8], help="decoder layers that get a memory branch")
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--memory-depth", type=int, default=2)
    parser.add_argument("--memory-expansion", type=int, default=2)
    parser.add_argument("--persistent-tokens", type=int, default=0)
    parser.add_argument("--overlap", type=int, default=0)
    parser.add_argument("--dtype", default=None, help="base dtype, e.g. bfloat16 (default: as stored)")
    parser.add_argument("--load-in-4bit", action="store_true", help="4-bit base via bitsandbytes (GPU only)")
    parser.add_argument("--trust-remote-code", action="store_true")
    args = parser.parse_args()

    config = TitansConfig(
        layers=args.layers,
        window=args.window,
        chunk_size=args.chunk_size,
        num_heads=args.num_heads,
        head_dim=args.head_dim,
        memory_depth=args.memory_depth,
        memory_expansion=args.memory_expansion,
        persistent_tokens=args.persistent_tokens,
        overlap=args.overlap,
    )
    base, _ = load_base_model(
        args.model, dtype=args.dtype, load_in_4bit=args.load_in_4bit, trust_remote_code=args.trust_remote_code
    )
    model = retrofit(base, config)
    counts = model.parameter_counts()
    model.save_adapter(args.out)
    print(f"retrofitted {base.config.name_or_path} ({base.config.model_type}) at layers {config.layers}, window {config.window}")
    print(f"adapter: {counts['trainable']:,} trainable parameters; base: {counts['base']:,} frozen")
    print(f"saved to {args.out}")


if __name__ == "__main__":
    run_script(main)
