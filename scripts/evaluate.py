"""Long-context evaluation of a base model with or without a Titans adapter; writes results.json, report.md, PNGs.

python scripts/evaluate.py --model default --adapter adapters/x --suite quick     # CPU, <= 10 minutes
python scripts/evaluate.py --model meta-llama/Llama-3.2-1B --adapter adapters/y --suite full --out reports/y
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from titans_adapter import load_adapter, load_base_model
from titans_adapter.cli import run_script
from titans_adapter.evaluation import QA_SYSTEMS, EvaluationError, RunOptions, evaluate, get_suite
from titans_adapter.report import render_report
from titans_adapter.tasks import ALL_TASKS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="'default' (embedded SmolLM2-135M), a local dir or a hub id")
    parser.add_argument("--adapter", default=None, help="adapter directory (omit it to evaluate the base alone)")
    parser.add_argument("--suite", default="quick", choices=["quick", "full"])
    parser.add_argument("--out", default=None, help="output folder (default: reports/<adapter or base>-<suite>)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated examples")
    parser.add_argument("--limit", type=int, default=None, help="at most N examples (and perplexity documents) per cell")
    parser.add_argument(
        "--corpus",
        default=None,
        help="perplexity corpus and haystack: a .txt file, a folder of .txt, or a datasets name[:config][@split]",
    )
    parser.add_argument(
        "--lengths", type=int, nargs="+", default=None, help="override the needle / bAbI context lengths (tokens)"
    )
    parser.add_argument("--tasks", nargs="+", default=None, help=f"only these tasks (of {' '.join(ALL_TASKS)})")
    parser.add_argument("--depths", type=float, nargs="+", default=None, help="override the needle depths (0 = start, 1 = end)")
    parser.add_argument("--ppl-length", type=int, default=None, help="override the perplexity document length (tokens)")
    parser.add_argument(
        "--qa-systems",
        nargs="+",
        default=None,
        choices=list(QA_SYSTEMS),
        help="answer needles and bAbI with only these systems (full windowed streaming retrofit); perplexity compares all",
    )
    parser.add_argument(
        "--no-cost", action="store_true", help="skip the cost rows at --lengths (minutes per system at 16k+ on a CPU)"
    )
    parser.add_argument(
        "--window",
        type=int,
        default=None,
        help="window of the base systems without an adapter (default 512; with one: its window)",
    )
    parser.add_argument("--sinks", type=int, default=4, help="attention sinks of the StreamingLLM baseline")
    parser.add_argument(
        "--hub", action="store_true", help="also try the real BABILong and PG-19 from the hub (always tried by --suite full)"
    )
    parser.add_argument("--dtype", default=None, help="base dtype, e.g. bfloat16 (default: as stored)")
    parser.add_argument("--device", default=None, help="e.g. cuda (default: cuda if available, else cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    start = time.time()
    base, tokenizer = load_base_model(args.model, dtype=args.dtype, device=device)
    model = load_adapter(base, args.adapter) if args.adapter else None
    native = int(getattr(base.config, "max_position_embeddings", 2048))
    suite = get_suite(args.suite, native)
    if args.lengths:
        suite = replace(
            suite, needle_lengths=tuple(args.lengths), babi_lengths=tuple(args.lengths), cost_lengths=tuple(args.lengths)
        )
    if args.tasks:
        unknown = sorted(set(args.tasks) - set(ALL_TASKS))
        if unknown:
            raise EvaluationError(f"Unknown task(s) {', '.join(unknown)}; valid: {', '.join(ALL_TASKS)}.")
        suite = replace(
            suite,
            needle_tasks=tuple(t for t in suite.needle_tasks if t in args.tasks),
            babi_tasks=tuple(t for t in suite.babi_tasks if t in args.tasks),
        )
    if args.depths:
        suite = replace(suite, depths=tuple(args.depths))
    if args.ppl_length:
        suite = replace(suite, ppl_length=args.ppl_length)
    if args.no_cost:
        suite = replace(suite, cost_lengths=())
    name = (args.adapter or args.model).rstrip("/").split("/")[-1]
    out = args.out or f"reports/{name}-{args.suite}"
    options = RunOptions(
        suite=args.suite,
        seed=args.seed,
        limit=args.limit,
        corpus=args.corpus,
        window=args.window,
        sinks=args.sinks,
        model_name=args.model,
        adapter=args.adapter,
        qa_systems=tuple(args.qa_systems) if args.qa_systems else None,
        extra={"hub": args.hub},
    )
    results = evaluate(base, tokenizer, model, options, out, suite=suite, log=lambda s: print(s, flush=True))
    report = render_report(results, out)
    print(f"done in {time.time() - start:.0f}s (load included): {out}/results.json, {report}")


if __name__ == "__main__":
    run_script(main)
