"""Read documents of any length into a Titans memory and save the memory state (safetensors).

python scripts/memorize.py --model default --adapter adapters/x --doc book.txt --out memory/book.safetensors
python scripts/memorize.py --adapter adapters/x --memory memory/book.safetensors --doc more.txt --out memory/book.safetensors
python scripts/memorize.py --adapter adapters/x --dataset json --data-files notes.jsonl --text-field text --out memory/notes.safetensors

The output is written to a temporary file and renamed, so an interrupted run leaves no partial file.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time

import torch

from titans_adapter.cli import run_script
from titans_adapter.generation import (
    dataset_texts,
    load_generation_model,
    memorize_texts,
    read_memory_metadata,
    read_text_file,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="'default' (embedded SmolLM2-135M), a local dir or a hub id")
    parser.add_argument("--adapter", default=None, help="adapter directory (omitted: an untrained retrofit)")
    parser.add_argument("--doc", action="append", default=[], help="UTF-8 text file to read (repeatable, read in order)")
    parser.add_argument("--dataset", default=None, help="a `datasets` source: hub name or builder (json, csv, parquet, text)")
    parser.add_argument("--data-files", nargs="+", default=None, help="files for a builder --dataset")
    parser.add_argument("--dataset-config", default=None)
    parser.add_argument("--split", default="train")
    parser.add_argument("--text-field", default="text")
    parser.add_argument("--max-docs", type=int, default=None, help="read at most this many dataset rows")
    parser.add_argument("--memory", default=None, help="existing memory state to append to")
    parser.add_argument("--out", required=True, help="memory state file to write (.safetensors)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if not args.doc and not args.dataset:
        parser.error("pass --doc FILE and/or --dataset NAME")
    if args.threads:
        torch.set_num_threads(args.threads)

    texts = [read_text_file(p) for p in args.doc]  # fail on a bad file before loading the model
    model, tokenizer, note = load_generation_model(args.model, args.adapter)
    print(f"model: {args.model}; {note}", file=sys.stderr)
    state, documents = None, []
    if args.memory:
        state = model.load_memory(args.memory)
        documents = read_memory_metadata(args.memory)["notes"].get("documents", [])
        print(f"appending to {args.memory} ({state.tokens_seen:,} tokens already read)", file=sys.stderr)
    before = state.tokens_seen if state is not None else 0
    sources = iter(texts)
    if args.dataset:
        rows = dataset_texts(args.dataset, args.split, args.text_field, args.dataset_config, args.data_files, args.max_docs)
        sources = itertools.chain(sources, rows)
    start = time.perf_counter()
    state, count = memorize_texts(model, tokenizer, sources, state)
    seconds = time.perf_counter() - start
    documents += args.doc + ([f"dataset:{args.dataset}:{args.split}"] if args.dataset else [])
    model.save_memory(state, args.out, notes={"documents": documents})
    read = state.tokens_seen - before
    print(
        f"read {count} document(s), {read:,} tokens in {seconds:.1f} s ({read / seconds:,.0f} tokens/s); "
        f"the memory has read {state.tokens_seen:,} tokens; saved to {args.out}"
    )


if __name__ == "__main__":
    run_script(main)
