"""Train a Titans memory adapter from a recipe.

    python scripts/train.py --config recipes/smollm2_135m_memory_cpu.yaml [key=value ...]
    python scripts/train.py --config recipes/llama3_2_1b_memory_single_gpu.yaml data.path=/data/pg19 lr=3e-4
    accelerate launch scripts/train.py --config recipes/llama3_1_8b_qlora_memory_single_gpu.yaml
    python scripts/train.py --resume outputs/run1            # continue a run (its recipe.yaml, or --config)
    python scripts/train.py --resume outputs/run1 --stop-at-step 2400 data.passkey_digits=8   # one curriculum stage
    python scripts/train.py --evaluate outputs/run1 eval_synthetic_samples=200   # validate its adapter again

The output directory holds the final adapter (load it with titans_adapter.load_adapter), checkpoints/
and metrics.jsonl. Any recipe key can be overridden with key=value (nested keys as a.b=c).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from titans_adapter.cli import EXPECTED_ERRORS
from titans_adapter.recipe import load_recipe
from titans_adapter.training import TrainingInterrupted, evaluate_run, format_eval, train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="recipe YAML file")
    parser.add_argument("--resume", metavar="DIR", help="output directory of a run to continue from its latest checkpoint")
    parser.add_argument("--evaluate", metavar="DIR", help="only validate the adapter of a finished run (writes nothing)")
    parser.add_argument(
        "--stop-at-step",
        type=int,
        metavar="N",
        help="save and evaluate at optimizer step N, the LR schedule still running to max_steps (a curriculum stage)",
    )
    parser.add_argument("overrides", nargs="*", help="key=value recipe overrides, e.g. max_steps=100 data.path=/data")
    args = parser.parse_args(argv)
    if args.evaluate and args.stop_at_step is not None:
        parser.error("--stop-at-step belongs to training; --evaluate trains nothing")
    config = args.config
    run_dir = args.resume or args.evaluate
    if config is None and run_dir and (Path(run_dir) / "recipe.yaml").is_file():
        config = str(Path(run_dir) / "recipe.yaml")
    if config is None:
        parser.error("--config is required (or --resume/--evaluate DIR of a run that saved its recipe.yaml)")
    try:
        recipe = load_recipe(config, args.overrides)
        if args.evaluate:
            result = evaluate_run(args.evaluate, recipe)
            print(f"{args.evaluate}: {format_eval(result)}")
            print(json.dumps(result))
        else:
            train(recipe, resume=args.resume, stop_at_step=args.stop_at_step)
    except TrainingInterrupted as exc:
        print(exc, file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
