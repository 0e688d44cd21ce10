"""Training recipes: YAML files of nested keys, `a.b=c` overrides, validated before any heavy work.

A recipe is a nested dict whose schema is DEFAULTS below; `adapter` holds TitansConfig fields. Every
key of a file or an override must exist in the schema (an unknown key fails with the valid keys and a
did-you-mean) and values are coerced to the type of the default. Validation never loads a model.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError, TitansConfig, unknown_key_error
from .retrofit import COMPILE_MODES
from .synthetic import QUESTION_FORMATS

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCHEDULERS = ("constant", "linear", "cosine")
SHORT_DOC_POLICIES = ("drop", "concat")
SYNTHETIC_TASKS = ("passkey", "kv", "name_attribute", "number", "named_number", "keyed_number")

DEFAULTS: dict[str, Any] = {
    "model": "default",  # "default" (embedded SmolLM2-135M), a local model directory, or a hub id
    "trust_remote_code": False,
    "load_in_4bit": False,  # QLoRA-style frozen base through bitsandbytes (CUDA only)
    "precision": "auto",  # auto: bf16 on a GPU that supports it, else fp32
    "gradient_checkpointing": False,  # recompute the frozen base's layers in backward (saves memory)
    "compile_memory": "none",  # torch.compile the memory branches: none, default, reduce-overhead (CUDA graphs), ...
    "adapter": {
        f.name: copy.deepcopy(f.default_factory() if callable(f.default_factory) else f.default)
        for f in dataclasses.fields(TitansConfig)
    },
    "lora": {
        "enabled": False,  # LoRA on the base's attention through peft, trained with the memory
        "r": 8,
        "alpha": 16,
        "dropout": 0.0,
        "target_modules": ["q_proj", "v_proj"],
    },
    "data": {
        "path": None,  # None: the offline essays; else a .txt/.jsonl/.parquet file or folder, or a hub dataset name
        "hub_config": None,  # the dataset's config name on the hub, if any
        "split": "train",  # the split read from a hub dataset
        "text_field": "text",
        "streaming": True,  # stream hub datasets instead of downloading them whole
        "max_documents": 0,  # 0 = all (a hub dataset streams this many documents)
        "windows_per_sample": 4,  # sequence length = windows_per_sample * adapter.window tokens
        "short_docs": "drop",  # documents shorter than two windows: drop them or concatenate them
        "val_fraction": 0.1,  # share of documents held out for validation (split by document)
        "synthetic_fraction": 0.5,  # share of training samples that are synthetic long-range facts
        "synthetic_tasks": ["passkey", "kv", "name_attribute"],  # also: number, named_number, keyed_number (see synthetic.py)
        "question_formats": ["plain"],  # each synthetic question's layout is drawn from these: plain, qa
        "fact_window": 0,  # window holding the fact (-1 = a random window before the question's)
        "question_window": -1,  # window holding the question (-1 = the last)
        "fact_across_windows": False,  # a fact may run from its window into the next (never the question's)
        "passkey_digits": 5,  # digits of a synthetic passkey (a curriculum in key length changes it between stages)
        "natural_loss_weight": 1.0,  # weight of the natural-text loss against the synthetic answer loss
        "natural_loss_from_window": 1,  # natural text: loss only on windows >= this (memory matters there)
        "answer_end": False,  # synthetic answers end in a trained "." (a greedy answer then stops after the key)
        "last_window_tokens": 0,  # samples end this many tokens into their last window (0 = a whole window)
        "gap_windows": 0,  # up to this many cached essay windows read before every sample's last window (0 = none)
        "gap_pool_windows": 512,  # training-split windows whose branch inputs are computed once for the gaps
    },
    "seed": 0,
    "max_steps": 1000,
    "max_train_minutes": 0.0,  # stop training (then save and evaluate) after this many minutes (0 = no limit)
    "batch_size": 4,  # samples per process per micro-step
    "grad_accum": 1,  # micro-steps per optimizer step (global batch = batch_size * grad_accum * processes)
    "lr": 1.0e-3,  # projections and initial memory weights
    "gate_lr": 2.0e-2,  # gates (inner theta/eta/alpha and output gates): their own, higher LR, no decay
    "projection_lr": None,  # the memory's q/k/v and bigram context projections (None = lr); lower keeps their addressing
    "projection_anchor": 0.0,  # pull of those projections toward their initial values, per unit of LR (0 = none)
    "read_loss_weight": 0.0,  # weight of the read loss: the synthetic answer read off the memory's read (0 = none)
    "weight_decay": 0.0,
    "betas": [0.9, 0.99],
    "grad_clip": 1.0,  # max global grad norm (0 = off)
    "scheduler": "cosine",
    "warmup_steps": 20,
    "min_lr_ratio": 0.1,  # final LR / peak LR for linear and cosine
    "num_threads": 0,  # CPU threads for torch (0 = torch's default)
    "log_every": 10,
    "eval_every": 0,  # 0 = evaluate only at the start and the end
    "eval_samples": 16,  # natural validation samples (loss by window)
    "eval_synthetic_samples": 32,  # synthetic validation samples (answer accuracy)
    "save_every": 100,  # checkpoint interval in optimizer steps (0 = only at the end / on a signal)
    "keep_checkpoints": 2,
    "output_dir": "outputs/run",
    "tensorboard": True,  # also log to TensorBoard when it is installed
}

# Keys whose default is None or a list: the type their values must have.
OPTIONAL_TYPES: dict[str, tuple[type, ...]] = {"data.path": (str,), "data.hub_config": (str,), "projection_lr": (float,)}


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


VALID_KEYS = sorted(flatten(DEFAULTS))
SECTIONS = sorted(k for k, v in DEFAULTS.items() if isinstance(v, dict))


def _coerce(key: str, value: Any) -> Any:
    """Coerce value to the type of DEFAULTS[key]; a clear ConfigError if it cannot be."""
    default = flatten(DEFAULTS)[key]
    if value is None:
        if default is None or key in OPTIONAL_TYPES:
            return None
        raise ConfigError(f"Recipe key '{key}' must not be empty (null).")
    if default is None:
        types = OPTIONAL_TYPES.get(key, (str,))
        if types == (float,):
            try:
                return float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"Recipe key '{key}' must be a number or null, got {value!r}.") from None
        if not isinstance(value, types):
            raise ConfigError(f"Recipe key '{key}' must be a {types[0].__name__}, got {value!r}.")
        return value
    try:
        if isinstance(default, bool):
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.lower() in ("true", "1", "yes")
            if isinstance(value, bool):
                return value
            raise TypeError
        if isinstance(default, int):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if isinstance(default, float):
            if isinstance(value, bool):
                raise TypeError
            return float(value)  # also "3e-4", which YAML 1.1 reads as a string
        if isinstance(default, list):
            if isinstance(value, (str, int)):
                value = [value]
            if not isinstance(value, list):
                raise TypeError
            return list(value)
        if isinstance(default, str):
            if not isinstance(value, str):
                raise TypeError
            return value
    except (TypeError, ValueError):
        pass
    raise ConfigError(f"Recipe key '{key}' expects a {type(default).__name__} (like {default!r}), got {value!r}.")


def _set(tree: dict[str, Any], key: str, value: Any, where: str) -> None:
    """Set a dotted key in the nested tree after checking it exists in the schema."""
    if key in SECTIONS:
        if not isinstance(value, dict):
            raise ConfigError(f"Recipe key '{key}' is a section; give its keys ({key}.<name>), got {value!r}.")
        for sub, sub_value in value.items():
            _set(tree, f"{key}.{sub}", sub_value, where)
        return
    if key not in VALID_KEYS:
        raise unknown_key_error(key, VALID_KEYS, f"recipe ({where})")
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = _coerce(key, value)


def parse_override(text: str) -> tuple[str, Any]:
    """'a.b=c' -> ('a.b', YAML value of c)."""
    if "=" not in text or text.startswith("="):
        raise ConfigError(f"Override '{text}' is not of the form key=value (e.g. lr=3e-4 or data.path=/data/pg19).")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def load_recipe(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Defaults <- YAML file <- `key=value` overrides, then validate. Loads no model and no data."""
    recipe = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"Recipe file '{path}' not found.")
        try:
            content = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"Recipe file '{path}' is not valid YAML: {exc}") from exc
        if not isinstance(content, dict):
            raise ConfigError(f"Recipe file '{path}' must hold a mapping of keys, got {type(content).__name__}.")
        for key, value in content.items():
            _set(recipe, str(key), value, str(path))
    for text in overrides or []:
        key, value = parse_override(text)
        _set(recipe, key, value, "command line")
    validate_recipe(recipe)
    return recipe


def _check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"Recipe key '{key}' must be one of {', '.join(choices)}; got '{value}'.")


def validate_recipe(recipe: dict[str, Any]) -> TitansConfig:
    """Check every value and cross-constraint; returns the adapter's TitansConfig. Loads nothing."""
    config = TitansConfig.from_dict(recipe["adapter"])  # window >= chunk_size and friends
    data = recipe["data"]
    _check_choice("precision", recipe["precision"], PRECISIONS)
    _check_choice("scheduler", recipe["scheduler"], SCHEDULERS)
    _check_choice("compile_memory", recipe["compile_memory"], ("none", *COMPILE_MODES))
    _check_choice("data.short_docs", data["short_docs"], SHORT_DOC_POLICIES)
    for task in data["synthetic_tasks"]:
        _check_choice("data.synthetic_tasks", task, SYNTHETIC_TASKS)
    for layout in data["question_formats"]:
        _check_choice("data.question_formats", layout, QUESTION_FORMATS)
    positive = ["max_steps", "batch_size", "grad_accum", "log_every", "keep_checkpoints", "lora.r", "data.passkey_digits"]
    non_negative = ["eval_every", "save_every", "eval_samples", "eval_synthetic_samples", "warmup_steps", "num_threads"]
    non_negative += [
        "data.max_documents",
        "data.natural_loss_from_window",
        "data.gap_windows",
        "max_train_minutes",
        "lr",
        "gate_lr",
        "weight_decay",
        "projection_anchor",
        "read_loss_weight",
        "grad_clip",
    ]
    flat = flatten(recipe)
    for key in positive:
        if flat[key] < 1:
            raise ConfigError(f"Recipe key '{key}' must be >= 1, got {flat[key]}.")
    for key in non_negative + ["projection_lr"] * (recipe["projection_lr"] is not None):
        if flat[key] < 0:
            raise ConfigError(f"Recipe key '{key}' must be >= 0, got {flat[key]}.")
    if not 0 <= recipe["min_lr_ratio"] <= 1:
        raise ConfigError(f"min_lr_ratio must be in [0, 1], got {recipe['min_lr_ratio']}.")
    if len(recipe["betas"]) != 2 or not all(0 <= float(b) < 1 for b in recipe["betas"]):
        raise ConfigError(f"betas must be two numbers in [0, 1), got {recipe['betas']}.")
    n = data["windows_per_sample"]
    if n < 2:
        raise ConfigError(f"data.windows_per_sample must be >= 2 (the memory links windows), got {n}.")
    if not 0 < data["val_fraction"] < 1:
        raise ConfigError(f"data.val_fraction must be in (0, 1), got {data['val_fraction']}.")
    if not 0 <= data["synthetic_fraction"] <= 1:
        raise ConfigError(f"data.synthetic_fraction must be in [0, 1], got {data['synthetic_fraction']}.")
    if data["synthetic_fraction"] > 0 and not data["synthetic_tasks"]:
        raise ConfigError("data.synthetic_tasks is empty but data.synthetic_fraction > 0.")
    if not data["question_formats"]:
        raise ConfigError("data.question_formats is empty; name at least one of: " + ", ".join(QUESTION_FORMATS) + ".")
    if data["natural_loss_from_window"] >= n:
        raise ConfigError(
            f"data.natural_loss_from_window ({data['natural_loss_from_window']}) must be < windows_per_sample ({n})."
        )
    if not 0 <= data["last_window_tokens"] <= recipe["adapter"]["window"]:
        raise ConfigError(
            f"data.last_window_tokens must be in [0, adapter.window = {recipe['adapter']['window']}], got {data['last_window_tokens']}."
        )
    question = data["question_window"] % n if data["question_window"] < 0 else data["question_window"]
    if not 1 <= question < n:
        raise ConfigError(
            f"data.question_window must name window 1..{n - 1} (or -1 for the last), got {data['question_window']}."
        )
    if data["fact_window"] != -1 and not 0 <= data["fact_window"] < question:
        raise ConfigError(
            f"data.fact_window ({data['fact_window']}) must come before the question window ({question}), or be -1 (random)."
        )
    if data["gap_windows"]:
        if data["gap_pool_windows"] < 1:
            raise ConfigError(f"data.gap_pool_windows must be >= 1 when data.gap_windows is set, got {data['gap_pool_windows']}.")
        config.cacheable_layer("data.gap_windows (cached branch inputs)")
        if recipe["lora"]["enabled"]:
            raise ConfigError("data.gap_windows caches the frozen layers' outputs, which LoRA (lora.enabled) would change.")
    if recipe["lora"]["enabled"] and not recipe["lora"]["target_modules"]:
        raise ConfigError("lora.target_modules is empty while lora.enabled is true.")
    return config


def check_environment(recipe: dict[str, Any], cuda_available: bool) -> None:
    """Requests the machine cannot honour (4-bit or half precision without a GPU), before loading anything."""
    if recipe["load_in_4bit"] and not cuda_available:
        raise ConfigError("load_in_4bit=true needs a CUDA GPU (bitsandbytes); this machine has none. Set load_in_4bit=false.")
    if recipe["precision"] in ("bf16", "fp16") and not cuda_available:
        raise ConfigError(f"precision={recipe['precision']} needs a GPU; on a CPU use precision=fp32 (or auto).")


def dump_recipe(recipe: dict[str, Any]) -> str:
    """The full, resolved recipe as YAML (written next to the run's outputs)."""
    return yaml.safe_dump(recipe, sort_keys=False)
