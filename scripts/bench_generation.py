"""Time and memory per generated token as the consumed context grows: retrofit vs base with full attention.

python scripts/bench_generation.py --model default --contexts 4096 8160 32768 262144 --new-tokens 32 --threads 1

The retrofit reads the context into its memory (memorize, complete windows only up to the top memory layer),
then generates greedily; its KV cache never exceeds one window. The base model prefills the same context
with full attention (only where context + new tokens fit its native context) and decodes with its growing
KV cache. For each row: decode tokens/s, peak RSS while decoding (Linux VmHWM, reset before the decode), and
the KV cache length at the end. The text is the offline essay corpus, repeated as needed.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from pathlib import Path

import torch
from transformers import DynamicCache

from titans_adapter.data import load_essays
from titans_adapter.generation import load_generation_model


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux >= 4.0); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def rss_mb(field: str) -> float:
    """VmRSS (current) or VmHWM (peak since the last reset) of this process, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def corpus_ids(tokenizer, n: int) -> torch.Tensor:
    """n token ids of the essays, repeated end to end as often as needed. (1, n)"""
    ids = tokenizer("\n\n".join(load_essays().values()), add_special_tokens=False, return_tensors="pt").input_ids
    reps = -(-n // ids.shape[1])
    return ids.repeat(1, reps)[:, :n]


@torch.no_grad()
def bench_retrofit(model, ids: torch.Tensor, contexts: list[int], new_tokens: int) -> list[dict]:
    """Read the stream once, stopping at each context length to time a greedy continuation."""
    rows, state, read, read_seconds = [], None, 0, 0.0
    for context in contexts:
        start = time.perf_counter()
        state = model.memorize(ids[:, read : context - 1], state, progress=True, desc=f"read to {context}")
        read_seconds += time.perf_counter() - start
        read = context - 1
        reset_peak_rss()
        before = rss_mb("VmRSS")
        start = time.perf_counter()
        out = model.generate(
            ids[:, read:context], memory_state=state, max_new_tokens=new_tokens, eos_token_id=None, return_dict_in_generate=True
        )
        seconds = time.perf_counter() - start
        cache = out.memory_state.cache
        rows.append(
            {
                "model": "retrofit",
                "context": context,
                "decode_tok_s": new_tokens / seconds,
                "ms_per_token": 1000 * seconds / new_tokens,
                "rss_before_mb": before,
                "peak_rss_mb": rss_mb("VmHWM"),
                "kv_cache_len": cache.get_seq_length() if cache is not None else 0,
                "read_tok_s": read / read_seconds,
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


@torch.no_grad()
def bench_base(base, ids: torch.Tensor, context: int, new_tokens: int) -> dict:
    """Prefill `context` tokens with full attention, then decode greedily with the KV cache."""
    cache = DynamicCache(config=base.config)
    kw = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"  # renamed in 5.x
    start = time.perf_counter()
    out = base(ids[:, :context], **{kw: cache}, use_cache=True, logits_to_keep=1)
    prefill = time.perf_counter() - start
    reset_peak_rss()
    before = rss_mb("VmRSS")
    start = time.perf_counter()
    token = out.logits[:, -1].argmax(-1, keepdim=True)
    for _ in range(new_tokens - 1):
        out = base(token, **{kw: cache}, use_cache=True)
        token = out.logits[:, -1].argmax(-1, keepdim=True)
    seconds = time.perf_counter() - start
    row = {
        "model": "base full attention",
        "context": context,
        "decode_tok_s": (new_tokens - 1) / seconds,
        "ms_per_token": 1000 * seconds / (new_tokens - 1),
        "rss_before_mb": before,
        "peak_rss_mb": rss_mb("VmHWM"),
        "kv_cache_len": cache.get_seq_length(),
        "read_tok_s": context / prefill,
    }
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--adapter", default=None, help="adapter directory (omitted: an untrained retrofit; same cost)")
    parser.add_argument("--contexts", type=int, nargs="+", default=[4096, 8160, 32768, 262144])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    contexts = sorted(args.contexts)
    model, tokenizer, note = load_generation_model(args.model, args.adapter)
    print(f"model: {args.model}; {note}", file=sys.stderr)
    native = int(getattr(model.base.config, "max_position_embeddings", 0))
    ids = corpus_ids(tokenizer, contexts[-1])
    rows = bench_retrofit(model, ids, contexts, args.new_tokens)
    for context in contexts:  # the retrofit's hooks pass through outside its own calls: this is the plain base
        if context + args.new_tokens <= native:
            rows.append(bench_base(model.base, ids, context, args.new_tokens))
    print(f"\n{args.new_tokens} greedy tokens after each context; {torch.get_num_threads()} torch thread(s)\n")
    print(
        "| model | context read | decode tok/s | ms / token | RSS before decoding (MiB) | peak RSS while decoding (MiB) | KV cache (positions) | read tok/s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for context in contexts:
        for row in [r for r in rows if r["context"] == context]:
            print(
                f"| {row['model']} | {context:,} | {row['decode_tok_s']:.1f} | {row['ms_per_token']:.0f} | "
                f"{row['rss_before_mb']:,.0f} | {row['peak_rss_mb']:,.0f} | {row['kv_cache_len']:,} | {row['read_tok_s']:,.0f} |"
            )
        if context + args.new_tokens > native:
            print(f"| base full attention | {context:,} | beyond its native context ({native:,}) | | | | | |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps({"threads": torch.get_num_threads(), "new_tokens": args.new_tokens, "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
