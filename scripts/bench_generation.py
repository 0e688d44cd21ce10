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
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import DynamicCache

from titans_adapter.data import load_essays
from titans_adapter.generation import load_generation_model
from titans_adapter.state import cache_key_values


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


def timing(seconds_per_token: list[float]) -> dict:
    """Median and best of the timed decodes (the machine is shared: the best is the least disturbed)."""
    median = statistics.median(seconds_per_token)
    return {"decode_tok_s": 1 / median, "ms_per_token": 1000 * median, "ms_per_token_best": 1000 * min(seconds_per_token)}


def state_mib(tensors: list[torch.Tensor]) -> float:
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


class RetrofitCase:
    """A greedy continuation of the retrofit after `context` tokens: the memory state and the next token."""

    def __init__(self, model, state, prompt: torch.Tensor, new_tokens: int) -> None:
        self.model, self.state, self.prompt, self.new_tokens = model, state, prompt, new_tokens

    @torch.no_grad()
    def decode(self) -> float:
        """Seconds per token: new_tokens forwards (the prompt token, then new_tokens - 1 generated ones)."""
        start = time.perf_counter()
        self.model.generate(self.prompt, memory_state=self.state, max_new_tokens=self.new_tokens, eos_token_id=None)
        return (time.perf_counter() - start) / self.new_tokens

    @torch.no_grad()
    def final_state(self):
        return self.model.generate(
            self.prompt, memory_state=self.state, max_new_tokens=self.new_tokens, eos_token_id=None, return_dict_in_generate=True
        ).memory_state


class BaseCase:
    """A greedy continuation of the base with full attention after prefilling `context` tokens."""

    def __init__(self, base, ids: torch.Tensor, new_tokens: int) -> None:
        self.base, self.new_tokens = base, new_tokens
        self.kw = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"  # renamed in 5.x
        cache = DynamicCache(config=base.config)
        start = time.perf_counter()
        with torch.no_grad():
            self.first_logits = base(ids, **{self.kw: cache}, use_cache=True, logits_to_keep=1).logits[:, -1]
        self.prefill_tok_s = ids.shape[1] / (time.perf_counter() - start)
        self.prefilled = cache_key_values(cache)
        self.cache = cache

    @torch.no_grad()
    def decode(self) -> float:
        """Seconds per token over new_tokens - 1 forwards from the same prefilled cache (update() copies, never writes in place)."""
        self.cache = DynamicCache(ddp_cache_data=self.prefilled)
        start = time.perf_counter()
        token = self.first_logits.argmax(-1, keepdim=True)
        for _ in range(self.new_tokens - 1):
            token = self.base(token, **{self.kw: self.cache}, use_cache=True).logits[:, -1].argmax(-1, keepdim=True)
        return (time.perf_counter() - start) / (self.new_tokens - 1)


def measured_decode(case) -> tuple[float, float, float]:
    """One timed decode with the peak RSS around it: (seconds per token, RSS before, peak RSS) in MiB."""
    reset_peak_rss()
    before = rss_mb("VmRSS")
    seconds = case.decode()
    return seconds, before, rss_mb("VmHWM")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--adapter", default=None, help="adapter directory (omitted: an untrained retrofit; same cost)")
    parser.add_argument("--contexts", type=int, nargs="+", default=[4096, 8160, 32768, 262144])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5, help="times each decode is timed (median and best reported)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    contexts = sorted(args.contexts)
    model, tokenizer, note = load_generation_model(args.model, args.adapter)
    print(f"model: {args.model}; {note}", file=sys.stderr)
    native = int(getattr(model.base.config, "max_position_embeddings", 0))
    ids = corpus_ids(tokenizer, contexts[-1])
    rows, samples = [], []
    tmp = tempfile.mkdtemp(prefix="bench-generation-")
    # 1. The retrofit reads the stream once, stopping at each context length: memory and one timed decode.
    state, read, read_seconds = None, 0, 0.0
    for context in contexts:
        start = time.perf_counter()
        state = model.memorize(ids[:, read : context - 1], state, progress=True, desc=f"read to {context}")
        read_seconds += time.perf_counter() - start
        read = context - 1
        case = RetrofitCase(model, state, ids[:, read:context], args.new_tokens)
        seconds, before, peak = measured_decode(case)
        final = case.final_state()
        held = state_mib(list(final.to_tensors().values()))
        kv = final.cache.get_seq_length() if final.cache is not None else 0
        rows.append(
            dict(model="retrofit", context=context, rss_before_mb=before, peak_rss_mb=peak, kv_cache_len=kv, state_mib=held)
        )
        rows[-1]["read_tok_s"] = read / read_seconds
        # Kept on disk, not in RAM, so that it does not count in the next rows' RSS.
        model.save_memory(state, Path(tmp) / f"{context}.safetensors")
        del case, final
        samples.append([seconds])
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    # 2. The base with full attention where it fits (the hooks pass through outside the retrofit's calls).
    fitting = [c for c in contexts if c + args.new_tokens <= native]
    for context in fitting:
        case = BaseCase(model.base, ids[:, :context], args.new_tokens)
        seconds, before, peak = measured_decode(case)
        kv, held = case.cache.get_seq_length(), state_mib([t for kv in cache_key_values(case.cache) for t in kv])
        rows.append(dict(model="base full attention", context=context, rss_before_mb=before, peak_rss_mb=peak, kv_cache_len=kv))
        rows[-1].update(state_mib=held, read_tok_s=case.prefill_tok_s)
        samples.append([seconds])
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        del case  # measured alone: its cache must not count in the next row's RSS
    # 3. More timed decodes, round robin over every case, so that the shared machine's load hits all alike.
    cases = [
        RetrofitCase(model, model.load_memory(Path(tmp) / f"{c}.safetensors"), ids[:, c - 1 : c], args.new_tokens)
        for c in contexts
    ]
    cases += [BaseCase(model.base, ids[:, :context], args.new_tokens) for context in fitting]
    for _ in range(args.repeats - 1):
        for i, case in enumerate(cases):
            samples[i].append(case.decode())
    for row, times in zip(rows, samples):
        row.update(timing(times))
    shutil.rmtree(tmp, ignore_errors=True)
    rows.sort(key=lambda r: (r["context"], r["model"] != "retrofit"))
    print(
        f"\n{args.new_tokens} greedy tokens after each context, timed {args.repeats}x (round robin); {torch.get_num_threads()} torch thread(s)\n"
    )
    print(
        "| model | context read | decode tok/s | ms / token (median) | ms / token (best) | RSS before decoding (MiB) | peak RSS while decoding (MiB) | KV cache (positions) | state held (MiB) | read tok/s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for context in contexts:
        for row in [r for r in rows if r["context"] == context]:
            print(
                f"| {row['model']} | {context:,} | {row['decode_tok_s']:.1f} | {row['ms_per_token']:.0f} | {row['ms_per_token_best']:.0f} | "
                f"{row['rss_before_mb']:,.0f} | {row['peak_rss_mb']:,.0f} | {row['kv_cache_len']:,} | {row['state_mib']:.1f} | {row['read_tok_s']:,.0f} |"
            )
        if context + args.new_tokens > native:
            print(f"| base full attention | {context:,} | beyond its native context ({native:,}) | | | | | | | |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps({"threads": torch.get_num_threads(), "new_tokens": args.new_tokens, "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
