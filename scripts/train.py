"""Train a Titans memory adapter from a recipe.

    python scripts/train.py --config recipes/smollm2_135m_memory_cpu.yaml [key=value ...]
    python scripts/train.py --config recipes/llama3_2_1b_memory_single_gpu.yaml data.path=/data/pg19 lr=3e-4
    accelerate launch scripts/train.py --config recipes/llama3_1_8b_qlora_memory_single_gpu.yaml
    python scripts/train.py --resume outputs/run1            # continue a run (its recipe.yaml, or --config)

The output directory holds the final adapter (load it with titans_adapter.load_adapter), checkpoints/
and metrics.jsonl. Any recipe key can be overridden with key=value (nested keys as a.b=c).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from titans_adapter.config import ConfigError
from titans_adapter.data import DataError
from titans_adapter.models import ModelLoadError
from titans_adapter.recipe import load_recipe
from titans_adapter.training import TrainingInterrupted, train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="recipe YAML file")
    parser.add_argument("--resume", metavar="DIR", help="output directory of a run to continue from its latest checkpoint")
    parser.add_argument("overrides", nargs="*", help="key=value recipe overrides, e.g. max_steps=100 data.path=/data")
    args = parser.parse_args(argv)
    config = args.config
    if config is None and args.resume and (Path(args.resume) / "recipe.yaml").is_file():
        config = str(Path(args.resume) / "recipe.yaml")
    if config is None:
        parser.error("--config is required (or --resume DIR of a run that saved its recipe.yaml)")
    try:
        recipe = load_recipe(config, args.overrides)
        train(recipe, resume=args.resume)
    except TrainingInterrupted as exc:
        print(exc, file=sys.stderr)
        return 130
    except (ConfigError, DataError, ModelLoadError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
