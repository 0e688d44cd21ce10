"""The training loop: a recipe in, a trained adapter, checkpoints and a metrics.jsonl log out.

One process or many (`accelerate launch`): every process holds the frozen base and the adapter, reads
its share of each global batch, and gradients are averaged over processes before each step (data
parallel). Samples are a pure function of (seed, global sample index), so the data position is the
step number and `--resume` continues exactly where a checkpoint left off.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor

from .config import ConfigError, TitansConfig
from .data import DataError, PackedSplit, load_documents, prepare_splits
from .models import load_base_model, load_tokenizer
from .recipe import check_environment, dump_recipe, validate_recipe
from .retrofit import (
    ADAPTER_CONFIG,
    ADAPTER_FORMAT,
    ADAPTER_FORMAT_VERSION,
    ADAPTER_WEIGHTS,
    TitansModel,
    base_identity,
    load_adapter,
    retrofit,
    write_dir_atomically,
)
from .synthetic import SyntheticSample, cut_length, make_sample

LORA_CONFIG = "lora_config.json"
LORA_WEIGHTS = "lora_model.safetensors"
CHECKPOINT_DIR = "checkpoints"
UPFRONT_SAMPLES = 64  # synthetic samples built before the model loads, to catch a question too long for its window
METRICS_FILE = "metrics.jsonl"
READ_PROBE_FILE = "read_probe.safetensors"  # in checkpoints only: the read loss's probe and its optimizer moments
VAL_SEED_OFFSET = 7919  # synthetic validation samples use another stream than training


class TrainingInterrupted(RuntimeError):
    """SIGINT/SIGTERM arrived; a checkpoint was written and the run stopped."""


# ----- data ---------------------------------------------------------------------------------------
@dataclass
class Batch:
    """Token ids and labels (b, L) of the synthetic and the natural samples of one micro-batch."""

    syn_ids: Tensor | None
    syn_labels: Tensor | None
    nat_ids: Tensor | None
    nat_labels: Tensor | None


def sample_length(recipe: dict[str, Any]) -> int:
    """Tokens per training sample: windows_per_sample windows, the last one cut to data.last_window_tokens if set."""
    window, data = recipe["adapter"]["window"], recipe["data"]
    return cut_length(window, data["windows_per_sample"], data["last_window_tokens"])


def recipe_sample(recipe: dict[str, Any], split: PackedSplit, tokenizer, seed: int, index: int) -> SyntheticSample:
    """Synthetic sample `index` of the stream `seed` over a split's text, laid out as the recipe's data section says
    (validation: seed = the recipe's seed + VAL_SEED_OFFSET, passkeys when the recipe names no synthetic task)."""
    data = recipe["data"]
    return make_sample(
        split.tokens,
        tokenizer,
        window=recipe["adapter"]["window"],
        windows=data["windows_per_sample"],
        tasks=data["synthetic_tasks"] or ["passkey"],
        seed=seed,
        index=index,
        fact_window=data["fact_window"],
        question_window=data["question_window"],
        last_window_tokens=data["last_window_tokens"],
        answer_end=data["answer_end"],
        question_formats=tuple(data["question_formats"]),
        fact_across_windows=data["fact_across_windows"],
        passkey_digits=data["passkey_digits"],
    )


class SampleStream:
    """Training samples by global index: synthetic (fact + question) or natural packed text."""

    def __init__(self, train: PackedSplit, tokenizer, recipe: dict[str, Any]) -> None:
        self.train, self.tokenizer, self.recipe = train, tokenizer, recipe
        self.window = recipe["adapter"]["window"]
        self.length = sample_length(recipe)

    def is_synthetic(self, index: int) -> bool:
        fraction = self.recipe["data"]["synthetic_fraction"]
        return random.Random(f"kind:{self.recipe['seed']}:{index}").random() < fraction

    def natural(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The packed sample at this index (a fresh seeded order every epoch); loss on later windows only."""
        n = len(self.train.samples)
        epoch, pos = divmod(index, n)
        order = np.random.default_rng([self.recipe["seed"], epoch]).permutation(n)
        ids = self.train.samples[order[pos], : self.length].copy()
        labels = ids.copy()
        labels[: self.recipe["data"]["natural_loss_from_window"] * self.window + 1] = -100
        return ids, labels

    def synthetic(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        sample = recipe_sample(self.recipe, self.train, self.tokenizer, self.recipe["seed"], index)
        return sample.ids, sample.labels

    def batch(self, indices: list[int], device: torch.device) -> Batch:
        syn, nat = [], []
        for i in indices:
            (syn if self.is_synthetic(i) else nat).append(self.synthetic(i) if self.is_synthetic(i) else self.natural(i))

        def stack(items: list, k: int) -> Tensor | None:
            return torch.from_numpy(np.stack([it[k] for it in items])).to(device) if items else None

        return Batch(stack(syn, 0), stack(syn, 1), stack(nat, 0), stack(nat, 1))


class GapPool:
    """Branch inputs of a split's text windows, computed once, read as a gap before a sample's last window (data.gap_windows).

    A gap window costs the memory alone (the frozen layers below it ran once, here), so samples can reach
    many windows further back than their own tokens at little cost per step.
    """

    def __init__(self, model: TitansModel, split: PackedSplit, recipe: dict[str, Any], seed_offset: int = 0) -> None:
        from tqdm.auto import tqdm

        self.window, self.seed = recipe["adapter"]["window"], recipe["seed"] + seed_offset
        overlap = recipe["adapter"]["overlap"]
        first = 1 if overlap else 0  # with an overlap, each pool window is read after the tokens before it
        available = len(split.tokens) // self.window - first
        count = min(recipe["data"]["gap_pool_windows"], available)
        if count <= 0:
            raise DataError(
                f"No whole window of {self.window} tokens for data.gap_windows in a split of {len(split.tokens)} tokens."
            )
        picks = first + np.sort(np.random.default_rng([self.seed, 1]).choice(available, count, replace=False))
        ids = torch.from_numpy(np.stack([split.tokens[i * self.window : (i + 1) * self.window] for i in picks]))
        before = torch.from_numpy(np.stack([split.tokens[i * self.window - overlap : i * self.window] for i in picks]))
        batch = 32
        parts = [
            model.branch_inputs(
                ids[start : start + batch].to(model.device),
                previous_ids=before[start : start + batch].to(model.device) if overlap else None,
            )
            for start in tqdm(range(0, count, batch), desc="gap windows", unit_scale=batch, dynamic_ncols=True)
        ]
        self.hidden = torch.cat(parts)  # (count, window, hidden)
        self.ids = ids  # (count, window): a gap's last window is re-read by the next one when there is an overlap

    def draw(self, rows: int, max_windows: int, key: list[int]) -> tuple[Tensor, Tensor] | None:
        """A gap of k windows drawn in 0..max_windows (the same k for every row), or None for k = 0; see fixed."""
        rng = np.random.default_rng([self.seed, *key])
        k = int(rng.integers(0, max_windows + 1))
        return self.fixed(rows, k, rng) if k else None

    def fixed(self, rows: int, windows: int, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        """Pool windows drawn with replacement: branch inputs (rows, windows * window, hidden) and the tokens of
        each row's last window (rows, window), which a model with an overlap re-reads next."""
        picks = torch.from_numpy(rng.integers(0, len(self.hidden), (rows, windows)))
        return self.hidden[picks].reshape(rows, windows * self.window, -1), self.ids[picks[:, -1]]


def last_window_start(length: int, window: int) -> int:
    """Where a sample of `length` tokens starts its last window: a gap is read just before it."""
    return (length - 1) // window * window


def sample_loss(model: TitansModel, ids: Tensor, labels: Tensor, gap: tuple[Tensor, Tensor] | None) -> Tensor:
    """Mean loss over the labelled tokens of (b, L) samples; a gap (GapPool.fixed: branch inputs (b, k * window,
    hidden) and the last gap window's tokens) is read before the last window."""
    if gap is None:
        return model(ids, labels=labels, return_logits=False).loss
    split = last_window_start(ids.shape[1], model.config.window)
    head = model(ids[:, :split], labels=labels[:, :split], return_logits=False)
    hidden, last_ids = gap
    state = model.write_branch_inputs(hidden, head.memory_state, last_ids)
    tail = model(ids[:, split:], labels=labels[:, split:], memory_state=state, return_logits=False)
    # forward() counts targets from the second position of what it reads; weigh the two means by those counts.
    n_head, n_tail = (int((part[:, 1:] != -100).sum()) for part in (labels[:, :split], labels[:, split:]))
    return (head.loss * n_head + tail.loss * n_tail) / max(n_head + n_tail, 1)


@contextmanager
def captured_reads(model: TitansModel, enabled: bool = True) -> Iterator[list[list[Tensor]]]:
    """While open (and enabled), each memory branch's forward appends its normalized reads (B, n, H * head_dim) to
    its list, in reading order; the gap windows of write_branch_inputs are written without a read and add nothing."""
    sinks: list[list[Tensor]] = [[] for _ in model.memories]
    if enabled:
        for branch, sink in zip(model.memories.values(), sinks):
            branch.read_sink = sink
    try:
        yield sinks
    finally:
        for branch in model.memories.values():
            branch.read_sink = None


class ReadProbe(torch.nn.Module):
    """The read loss's classifier (recipe key read_loss_weight; training only, saved in checkpoints, not in the
    adapter): next-token logits from the memory's normalized reads, through a learned map into the base's frozen
    output embeddings. The answer loss reaches the memory only through the frozen layers above its branch; this
    loss asks the read itself to hold the token that comes next, and reaches the memory's projections, initial
    weights and inner gates from there."""

    def __init__(self, model: TitansModel) -> None:
        super().__init__()
        config = model.config
        read_dim = len(config.layers) * config.num_heads * config.head_dim
        hidden = model.base.config.hidden_size
        self.to_hidden = torch.nn.Linear(read_dim, hidden, bias=False, device=model.device)
        torch.nn.init.zeros_(self.to_hidden.weight)  # no random draw: the run's random stream stays as without it

    def loss(self, model: TitansModel, sinks: list[list[Tensor]], labels: Tensor, gap: bool) -> tuple[Tensor, Tensor]:
        """Cross-entropy and accuracy of each labelled token (labels (B, L)) predicted from the reads at the position
        before it (captured_reads' sinks, every layer's side by side). After a gap the last window's first token
        follows the gap, not the position before it, so it is left out, as sample_loss leaves it out."""
        reads = torch.cat([torch.cat(parts, dim=1) for parts in sinks], dim=-1)  # (B, L, layers * H * head_dim)
        targets = labels[:, 1:].clone()
        if gap:
            targets[:, last_window_start(labels.shape[1], model.config.window) - 1] = -100
        picked = targets != -100
        if not picked.any():
            zero = reads.sum() * 0.0
            return zero, zero.detach()
        unembed = model.base.get_output_embeddings().weight  # (vocab, hidden), frozen
        hidden = self.to_hidden(reads[:, :-1][picked])  # (n, hidden)
        logits = F.linear(hidden.to(unembed.dtype), unembed).float()  # (n, vocab)
        targets = targets[picked]
        return F.cross_entropy(logits, targets), (logits.argmax(-1) == targets).float().mean()


def micro_batch_indices(step: int, micro: int, rank: int, recipe: dict[str, Any], world: int) -> list[int]:
    """Global sample indices of one process's micro-batch: the same global batch whatever the process count."""
    b, accum = recipe["batch_size"], recipe["grad_accum"]
    start = step * b * accum * world + (micro * world + rank) * b
    return list(range(start, start + b))


# ----- model --------------------------------------------------------------------------------------
def resolve_precision(recipe: dict[str, Any], cuda: bool) -> str:
    """'fp32', 'bf16' or 'fp16': auto is bf16 on a GPU that supports it, else fp32."""
    if recipe["precision"] != "auto":
        return recipe["precision"]
    return "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"


def lora_parameters(model: TitansModel) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if ".lora_" in n}


def add_lora(model: TitansModel, lora: dict[str, Any]) -> None:
    """Inject LoRA into the frozen base's attention (peft), in place: the decoder layers and hooks stay."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(
        r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"], target_modules=lora["target_modules"]
    )
    inject_adapter_in_model(config, model.base)
    params = lora_parameters(model)
    if not params:
        raise ConfigError(f"lora.target_modules {lora['target_modules']} matched no module of the base model.")
    for p in params.values():
        p.requires_grad_(True)


def trainable_parameters(model: TitansModel) -> dict[str, torch.nn.Parameter]:
    """The adapter plus LoRA weights, by name, in a stable order."""
    return {**model.adapter_parameters(), **lora_parameters(model)}


def load_frozen_base(recipe: dict[str, Any], device: torch.device | str, precision: str) -> tuple[Any, Any]:
    """The recipe's base model (in the precision's dtype, 4-bit if asked) and its tokenizer."""
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return load_base_model(
        recipe["model"],
        dtype=dtype,
        load_in_4bit=recipe["load_in_4bit"],
        device=device,
        trust_remote_code=recipe["trust_remote_code"],
    )


def build_model(recipe: dict[str, Any], device: torch.device, precision: str) -> tuple[TitansModel, Any]:
    base, tokenizer = load_frozen_base(recipe, device, precision)
    if recipe["gradient_checkpointing"]:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.train()  # transformers checkpoints only in training mode; the frozen base has no dropout to speak of
    model = retrofit(base, TitansConfig.from_dict(recipe["adapter"]))
    if recipe["lora"]["enabled"]:
        add_lora(model, recipe["lora"])
    return model, tokenizer


def group_settings(recipe: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The optimizer groups' peak LR and weight decay: the gates (own, higher LR, no weight decay), the memory's
    input projections (projection_lr, lr when unset) and the rest."""
    projection_lr = recipe["lr"] if recipe["projection_lr"] is None else recipe["projection_lr"]
    return {
        "main": {"lr": recipe["lr"], "weight_decay": recipe["weight_decay"]},
        "gates": {"lr": recipe["gate_lr"], "weight_decay": 0.0},
        "projections": {"lr": projection_lr, "weight_decay": recipe["weight_decay"]},
    }


def optimizer_groups(model: TitansModel) -> dict[str, list[str]]:
    """The trainable parameters' names per optimizer group of group_settings, in a stable order."""
    gates, projections = set(model.gate_parameter_names()), set(model.projection_parameter_names())
    names = list(trainable_parameters(model))
    return {
        "main": [n for n in names if n not in gates and n not in projections],
        "gates": [n for n in names if n in gates],
        "projections": [n for n in names if n in projections],
    }


def make_optimizer(model: TitansModel, recipe: dict[str, Any]) -> torch.optim.AdamW:
    """One AdamW group per entry of group_settings."""
    params = trainable_parameters(model)
    members = optimizer_groups(model)
    groups = [
        {"params": [params[n] for n in members[name]], "name": name, **settings}
        for name, settings in group_settings(recipe).items()
    ]
    return torch.optim.AdamW(groups, betas=tuple(recipe["betas"]))


def projection_anchors(model: TitansModel, recipe: dict[str, Any]) -> dict[str, Tensor]:
    """Copies of the memory's input projections as built, the values projection_anchor pulls toward (none when
    it is 0). On a resume the model is rebuilt from the same seed before the checkpoint loads, so these are the
    run's own initial values."""
    if not recipe["projection_anchor"]:
        return {}
    params = trainable_parameters(model)
    return {name: params[name].detach().clone() for name in model.projection_parameter_names()}


@torch.no_grad()
def pull_toward_anchors(
    model: TitansModel, optimizer: torch.optim.Optimizer, anchors: dict[str, Tensor], strength: float
) -> None:
    """p -= lr * strength * (p - p_init) for the projections, after the optimizer step: AdamW's decoupled weight
    decay, toward the initial values instead of zero. Adam moves every weight by about lr a step, whether its
    gradient is signal or noise; the pull bounds a random walk to about sqrt(lr / (2 * strength)) per weight while a
    steady gradient can still move a weight up to about 1 / strength."""
    if not anchors:
        return
    lr = next(group["lr"] for group in optimizer.param_groups if group["name"] == "projections")
    params = trainable_parameters(model)
    for name, initial in anchors.items():
        params[name].sub_(params[name] - initial, alpha=lr * strength)


def use_recipe_hyperparameters(optimizer: torch.optim.Optimizer, scheduler, recipe: dict[str, Any]) -> None:
    """After a resume, the recipe's lr, gate_lr, weight_decay and betas replace the checkpoint's, so that
    `--resume DIR lr=...` takes effect; the schedule continues from the restored step."""
    settings, factor = group_settings(recipe), lr_factor(scheduler.last_epoch, recipe)
    for group in optimizer.param_groups:
        peak = settings[group["name"]]["lr"]
        group.update(settings[group["name"]], initial_lr=peak, lr=peak * factor, betas=tuple(recipe["betas"]))
    scheduler.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]


def lr_factor(step: int, recipe: dict[str, Any]) -> float:
    """Linear warm-up, then constant, linear or cosine decay to min_lr_ratio at max_steps."""
    warmup, total, floor = recipe["warmup_steps"], recipe["max_steps"], recipe["min_lr_ratio"]
    if step < warmup:
        return (step + 1) / warmup
    if recipe["scheduler"] == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if recipe["scheduler"] == "linear":
        return 1.0 - (1.0 - floor) * progress
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def gate_stats(model: TitansModel) -> dict[str, float]:
    """Output gate mean |g| and the data-independent inner gates (from the to_gates biases), per layer."""
    stats: dict[str, float] = {}
    for layer, branch in model.memories.items():
        heads = branch.memory.config.num_heads
        bias = branch.memory.to_gates.bias.detach().float().view(3, heads)
        stats[f"gate/{layer}/out_abs"] = branch.gate.detach().abs().mean().item()
        stats[f"gate/{layer}/theta"] = (branch.memory.config.theta_max * torch.sigmoid(bias[0])).mean().item()
        stats[f"gate/{layer}/eta"] = torch.sigmoid(bias[1]).mean().item()
        stats[f"gate/{layer}/alpha"] = torch.sigmoid(bias[2]).mean().item()
    return stats


# ----- checkpoints --------------------------------------------------------------------------------
def adapter_meta(model: TitansModel) -> dict[str, Any]:
    """The adapter_config.json content that load_adapter reads."""
    return {
        "format": ADAPTER_FORMAT,
        "format_version": ADAPTER_FORMAT_VERSION,
        "titans_config": model.config.to_dict(),
        "base_model": base_identity(model.base),
    }


def adapter_writers(model: TitansModel, lora: dict[str, Any] | None) -> dict[str, Any]:
    """File name -> writer for the adapter files (and the LoRA files when LoRA is on)."""
    writers: dict[str, Any] = {
        ADAPTER_CONFIG: lambda p: p.write_text(json.dumps(adapter_meta(model), indent=2)),
        ADAPTER_WEIGHTS: lambda p: save_file(model.adapter_state_dict(), str(p), metadata={"format": ADAPTER_FORMAT}),
    }
    if lora is not None and lora["enabled"]:
        weights = {n: p.detach().contiguous() for n, p in lora_parameters(model).items()}
        writers[LORA_CONFIG] = lambda p: p.write_text(json.dumps(lora, indent=2))
        writers[LORA_WEIGHTS] = lambda p: save_file(weights, str(p))
    return writers


def save_final_adapter(model: TitansModel, output_dir: Path, lora: dict[str, Any]) -> None:
    """Write the adapter files at the top of output_dir, each through a temp file and a rename."""
    output_dir.mkdir(parents=True, exist_ok=True)
    writers = adapter_writers(model, lora)
    for name in [n for n in writers if n != ADAPTER_CONFIG] + [ADAPTER_CONFIG]:  # config last: it marks completion
        tmp = output_dir / f".{name}.tmp-{os.getpid()}"
        writers[name](tmp)
        os.replace(tmp, output_dir / name)


def load_trained(base, path: str | os.PathLike) -> TitansModel:
    """load_adapter, plus the LoRA weights when the run trained LoRA."""
    path = Path(path)
    model = load_adapter(base, path)
    if (path / LORA_CONFIG).is_file():
        add_lora(model, json.loads((path / LORA_CONFIG).read_text()))
        weights = load_file(str(path / LORA_WEIGHTS))
        missing = set(lora_parameters(model)) - set(weights)
        if missing:
            raise ConfigError(f"{path / LORA_WEIGHTS} lacks LoRA weights {sorted(missing)[:3]}.")
        model.load_state_dict(weights, strict=False)
    return model


def optimizer_parameter_names(model: TitansModel) -> list[str]:
    """The trainable parameters' names in the order make_optimizer gives them to AdamW (its state's ids)."""
    return [name for members in optimizer_groups(model).values() for name in members]


def _optimizer_tensors(optimizer: torch.optim.Optimizer, names: list[str]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Optimizer state keyed by parameter name ("name/exp_avg"): tensors for safetensors plus the JSON-able rest.
    By name, so that a resume finds each parameter's moments whatever the grouping of the run that saved them."""
    tensors, extra = {}, {}
    for pid, values in optimizer.state_dict()["state"].items():
        for key, value in values.items():
            if isinstance(value, Tensor):
                tensors[f"{names[pid]}/{key}"] = value.detach().cpu().contiguous()
            else:
                extra[f"{names[pid]}/{key}"] = value
    return tensors, {"keyed_by": "name", "extra": extra}


def _load_optimizer(
    optimizer: torch.optim.Optimizer,
    names: list[str],
    tensors: dict[str, Tensor],
    meta: dict[str, Any],
    legacy_order: list[str],
) -> None:
    """Restore the per-parameter state that _optimizer_tensors wrote into the optimizer's current groups (names: its
    parameters in id order). Checkpoints from before the projections group are keyed by id, in legacy_order."""
    if meta.get("keyed_by") == "name":
        saved_names = {name: name for name in names}
    else:
        saved_names = {str(pid): name for pid, name in enumerate(legacy_order)}
    ids = {name: pid for pid, name in enumerate(names)}
    state: dict[int, dict[str, Any]] = {}
    for key, value in list(tensors.items()) + list(meta["extra"].items()):
        saved, field = key.rsplit("/", 1) if "/" in key else key.split(".", 1)
        if saved not in saved_names:
            raise ConfigError(f"The checkpoint's optimizer state names a parameter this model lacks: {saved!r}.")
        state.setdefault(ids[saved_names[saved]], {})[field] = value
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})


def save_checkpoint(
    output_dir: Path,
    step: int,
    model: TitansModel,
    optimizer,
    scheduler,
    recipe: dict[str, Any],
    probe: tuple[ReadProbe, torch.optim.Optimizer] | None = None,
) -> Path:
    """checkpoints/step-N: adapter, LoRA, optimizer, scheduler, RNG states, data position, and the read loss's probe
    with its optimizer when there is one; written then renamed."""
    path = output_dir / CHECKPOINT_DIR / f"step-{step:07d}"
    opt_tensors, opt_meta = _optimizer_tensors(optimizer, optimizer_parameter_names(model))
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    py_state = random.getstate()
    state = {
        "step": step,
        "samples_seen": step * recipe["batch_size"] * recipe["grad_accum"],
        "scheduler": {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"},
        "optimizer": opt_meta,
        "python_rng": [py_state[0], list(py_state[1]), py_state[2]],
        "trainable": list(trainable_parameters(model)),
    }
    writers = adapter_writers(model, recipe["lora"])
    writers["optimizer.safetensors"] = lambda p: save_file(opt_tensors, str(p))
    writers["rng.safetensors"] = lambda p: save_file(rng, str(p))
    if probe is not None:
        probe_model, probe_optimizer = probe
        probe_tensors, state["read_probe_optimizer"] = _optimizer_tensors(probe_optimizer, list(probe_model.state_dict()))
        probe_tensors.update({k: v.detach().cpu().contiguous() for k, v in probe_model.state_dict().items()})
        writers[READ_PROBE_FILE] = lambda p: save_file(probe_tensors, str(p))
    writers["trainer_state.json"] = lambda p: p.write_text(json.dumps(state, indent=2))
    write_dir_atomically(path, writers)
    checkpoints = sorted((output_dir / CHECKPOINT_DIR).glob("step-*"))
    for old in checkpoints[: -recipe["keep_checkpoints"]]:
        import shutil

        shutil.rmtree(old, ignore_errors=True)
    return path


def latest_checkpoint(output_dir: Path) -> Path:
    """The newest complete checkpoint (directories are renamed into place only when complete)."""
    found = sorted(p for p in (output_dir / CHECKPOINT_DIR).glob("step-*") if (p / "trainer_state.json").is_file())
    if not found:
        raise FileNotFoundError(f"No checkpoint to resume from in '{output_dir / CHECKPOINT_DIR}'.")
    return found[-1]


def load_read_probe(path: Path, probe: ReadProbe, probe_optimizer: torch.optim.Optimizer) -> bool:
    """Restore the read loss's probe and its moments from checkpoint `path`; False when it has none (a run that
    trained without the read loss: the probe then starts from zero)."""
    if not (path / READ_PROBE_FILE).is_file():
        return False
    tensors = load_file(str(path / READ_PROBE_FILE))
    names = list(probe.state_dict())
    probe.load_state_dict({name: tensors.pop(name) for name in names})
    meta = json.loads((path / "trainer_state.json").read_text())["read_probe_optimizer"]
    _load_optimizer(probe_optimizer, names, tensors, meta, names)
    return True


def load_checkpoint(path: Path, model: TitansModel, optimizer, scheduler) -> int:
    """Restore everything save_checkpoint wrote but the read probe (load_read_probe); returns the step to continue
    from."""
    state = json.loads((path / "trainer_state.json").read_text())
    names = list(trainable_parameters(model))
    if state["trainable"] != names:
        raise ConfigError(f"Checkpoint {path} was made for other trainable parameters (adapter or LoRA config changed).")
    weights = load_file(str(path / ADAPTER_WEIGHTS))
    if (path / LORA_WEIGHTS).is_file():
        weights.update(load_file(str(path / LORA_WEIGHTS)))
    params = trainable_parameters(model)
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(weights[name])
    gates = set(model.gate_parameter_names())
    legacy_order = [n for n in names if n not in gates] + [n for n in names if n in gates]  # the two groups of old runs
    optimizer_state = load_file(str(path / "optimizer.safetensors"))
    _load_optimizer(optimizer, optimizer_parameter_names(model), optimizer_state, state["optimizer"], legacy_order)
    scheduler.load_state_dict({**scheduler.state_dict(), **state["scheduler"]})
    rng = load_file(str(path / "rng.safetensors"))
    torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available() and "cuda.0" in rng:
        torch.cuda.set_rng_state_all([rng[f"cuda.{i}"] for i in range(torch.cuda.device_count()) if f"cuda.{i}" in rng])
    version, internal, gauss = state["python_rng"]
    random.setstate((version, tuple(internal), gauss))
    return int(state["step"])


# ----- evaluation ---------------------------------------------------------------------------------
def window_losses(logits: Tensor, ids: Tensor, window: int) -> Tensor:
    """Mean loss of the predictions made inside each window. logits (B, L, V), ids (B, L) -> (num_windows,)."""
    losses = F.cross_entropy(logits[:, :-1].float().flatten(0, 1), ids[:, 1:].flatten(), reduction="none").view(ids.shape[0], -1)
    losses = torch.cat([losses, torch.full_like(losses[:, :1], float("nan"))], dim=1)  # the last position predicts nothing
    return losses.view(ids.shape[0], -1, window).nanmean(dim=(0, 2))


@torch.no_grad()
def evaluate(
    model: TitansModel,
    val: PackedSplit,
    tokenizer,
    recipe: dict[str, Any],
    base_too: bool = False,
    gap_pool: GapPool | None = None,
) -> dict[str, Any]:
    """Validation loss by window index and synthetic answer accuracy, for the model; with base_too also for
    the windowed base (the frozen base reading each window alone: the retrofit at init) and for the model with
    its memory reset at every window (the `reset_*` keys: what carrying the memory across windows adds).
    With a gap pool (validation windows), also the answers with data.gap_windows windows before the question's
    (the `far_*` keys).
    """
    window, n_win, batch = recipe["adapter"]["window"], recipe["data"]["windows_per_sample"], recipe["batch_size"]
    device = model.device
    results: dict[str, Any] = {}
    samples = torch.from_numpy(val.samples[: recipe["eval_samples"]]).to(device)
    sums = {"model": torch.zeros(n_win), "base": torch.zeros(n_win), "reset": torch.zeros(n_win)}
    for start in range(0, len(samples), batch):
        ids = samples[start : start + batch]
        sums["model"] += window_losses(model(ids).logits, ids, window).cpu() * len(ids)
        if base_too:
            pieces = range(0, ids.shape[1], window)
            base_logits = torch.cat([model.base(input_ids=ids[:, w : w + window]).logits for w in pieces], 1)
            sums["base"] += window_losses(base_logits, ids, window).cpu() * len(ids)
            # The same adapter with its memory reset at every window (overlap kept): what carrying the memory adds.
            state, reset_logits = model.init_memory_state(len(ids)), []
            for w in pieces:
                out = model(ids[:, w : w + window], memory_state=model.reset_memory(state))
                reset_logits.append(out.logits)
                state = out.memory_state
            sums["reset"] += window_losses(torch.cat(reset_logits, 1), ids, window).cpu() * len(ids)
    results["val_loss_by_window"] = (sums["model"] / max(len(samples), 1)).tolist()
    if base_too:
        results["base_val_loss_by_window"] = (sums["base"] / max(len(samples), 1)).tolist()
        results["reset_val_loss_by_window"] = (sums["reset"] / max(len(samples), 1)).tolist()
    results.update(synthetic_accuracy(model, val, tokenizer, recipe, base_too))
    if gap_pool is not None:  # the same questions with the longest gap of training before the question's window
        far = synthetic_accuracy(model, val, tokenizer, recipe, False, gap_pool, recipe["data"]["gap_windows"])
        results.update({f"far_{key}": value for key, value in far.items()})
    return results


def synthetic_accuracy(
    model: TitansModel,
    val: PackedSplit,
    tokenizer,
    recipe: dict[str, Any],
    base_too: bool,
    gap_pool: GapPool | None = None,
    gap_windows: int = 0,
) -> dict[str, Any]:
    """Held-out synthetic questions, each answer token predicted (argmax) after the true ones before it: token
    accuracy, exact match (= the greedy answer is right) and accuracy per answer token; with data.answer_end, also
    how often the "." after a whole answer is predicted (the greedy answer stops).

    With gap_windows, that many gap-pool windows are read right before the question's window. With base_too,
    also the windowed base and the adapter with its memory reset (`base_*`, `reset_*`).
    """
    window, device, with_end = recipe["adapter"]["window"], model.device, recipe["data"]["answer_end"]
    correct = {"model": 0, "base": 0, "reset": 0}
    exact = {"model": 0, "base": 0, "reset": 0}
    total = ends_right = 0
    by_position: list[list[int]] = []  # [right, seen] per answer token position
    for index in range(recipe["eval_synthetic_samples"]):
        sample = recipe_sample(recipe, val, tokenizer, recipe["seed"] + VAL_SEED_OFFSET, index)
        ids = torch.from_numpy(sample.ids).to(device).unsqueeze(0)
        q_start = (sample.answer_span[0] // window) * window
        a0, a1 = sample.answer_span
        target = ids[0, a0:a1]
        state = model(ids[:, :q_start], return_logits=False).memory_state
        if gap_windows and gap_pool is not None:
            hidden, last_ids = gap_pool.fixed(1, gap_windows, np.random.default_rng([index]))
            state = model.write_branch_inputs(hidden, state, last_ids)
        logits = model(ids[:, q_start:a1], memory_state=state).logits[0]
        answer = slice(a0 - 1 - q_start, a1 - 1 - q_start)
        preds = {"model": logits[answer].argmax(-1)}
        if base_too:
            preds["base"] = model.base(input_ids=ids[:, q_start:a1]).logits[0, answer].argmax(-1)
            reset = model(ids[:, q_start:a1], memory_state=model.reset_memory(state)).logits
            preds["reset"] = reset[0, answer].argmax(-1)
        for key, pred in preds.items():
            correct[key] += int((pred == target).sum())
            exact[key] += int(bool((pred == target).all()))
        total += len(target)
        if with_end:  # the logits after the answer's last token predict its "."
            ends_right += int(logits[a1 - 1 - q_start].argmax() == ids[0, a1])
        hits = (preds["model"] == target).tolist()  # e.g. the 5 digits of a passkey
        by_position += [[0, 0] for _ in range(len(hits) - len(by_position))]
        for counts, right in zip(by_position, hits):
            counts[0] += int(right)
            counts[1] += 1
    n = max(recipe["eval_synthetic_samples"], 1)
    results = {
        "synthetic_token_accuracy": correct["model"] / max(total, 1),
        "synthetic_exact": exact["model"] / n,
        "synthetic_accuracy_by_position": [right / seen for right, seen in by_position],
    }
    if with_end:
        results["synthetic_end_accuracy"] = ends_right / n
    if base_too:
        results["base_synthetic_token_accuracy"] = correct["base"] / max(total, 1)
        results["base_synthetic_exact"] = exact["base"] / n
        results["reset_synthetic_token_accuracy"] = correct["reset"] / max(total, 1)
    return results


# ----- the loop -----------------------------------------------------------------------------------
class MetricsLog:
    """metrics.jsonl (and TensorBoard when installed and asked for), written by the main process."""

    def __init__(self, output_dir: Path, enabled: bool, tensorboard: bool) -> None:
        self.enabled = enabled
        self.path = output_dir / METRICS_FILE
        self.writer = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(output_dir / "tensorboard"))
            except ImportError:
                self.writer = None

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.writer.add_scalar(f"{record.get('type', 'train')}/{key}", value, record["step"])
            self.writer.flush()


class _StopFlag:
    """Set by SIGINT/SIGTERM; the loop checkpoints and stops at the next step boundary."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signal = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _average_gradients(params: list[torch.nn.Parameter], world: int) -> None:
    """All-reduce (mean) the gradients over processes, as one flat buffer."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.flatten() for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= world
    offset = 0
    for p, g in zip(params, grads):
        p.grad = flat[offset : offset + g.numel()].view_as(g).clone()
        offset += g.numel()


def load_splits(recipe: dict[str, Any], tokenizer) -> tuple[PackedSplit, PackedSplit]:
    """The recipe's documents, split by document and packed into samples: (train, validation)."""
    data = recipe["data"]
    docs = load_documents(
        data["path"],
        text_field=data["text_field"],
        hub_config=data["hub_config"],
        split=data["split"],
        streaming=data["streaming"],
        max_documents=data["max_documents"],
    )
    return prepare_splits(
        docs,
        tokenizer,
        window=recipe["adapter"]["window"],
        windows_per_sample=data["windows_per_sample"],
        val_fraction=data["val_fraction"],
        seed=recipe["seed"],
        short_docs=data["short_docs"],
    )


def evaluate_run(run_dir: str | os.PathLike, recipe: dict[str, Any]) -> dict[str, Any]:
    """Validate a finished run's adapter again (e.g. on more samples): the end-of-training evaluation, on its own."""
    cuda = torch.cuda.is_available()
    check_environment(recipe, cuda)
    base, tokenizer = load_frozen_base(recipe, "cuda" if cuda else "cpu", resolve_precision(recipe, cuda))
    _, val_split = load_splits(recipe, tokenizer)
    model = load_trained(base, run_dir).eval()
    with torch.no_grad():
        val_gaps = GapPool(model, val_split, recipe, VAL_SEED_OFFSET) if recipe["data"]["gap_windows"] else None
        return evaluate(model, val_split, tokenizer, recipe, base_too=True, gap_pool=val_gaps)


def train(recipe: dict[str, Any], resume: str | os.PathLike | None = None, stop_at_step: int | None = None) -> dict[str, Any]:
    """Run a recipe to max_steps, or save and evaluate at stop_at_step with the LR schedule still shaped by max_steps
    (so that a curriculum can change the data mid-schedule); returns the final evaluation. Errors in the recipe,
    the machine or the data surface before the model loads."""
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    validate_recipe(recipe)
    if stop_at_step is not None and not 0 <= stop_at_step <= recipe["max_steps"]:
        raise ConfigError(f"stop_at_step must be in [0, max_steps = {recipe['max_steps']}], got {stop_at_step}.")
    cuda = torch.cuda.is_available()
    check_environment(recipe, cuda)
    precision = resolve_precision(recipe, cuda)
    if recipe["num_threads"]:
        torch.set_num_threads(recipe["num_threads"])
    output_dir = Path(resume if resume is not None else recipe["output_dir"])
    if resume is not None and not (output_dir / CHECKPOINT_DIR).is_dir():
        raise FileNotFoundError(f"--resume {output_dir}: no '{CHECKPOINT_DIR}' folder there.")

    accelerator = Accelerator(cpu=not cuda, mixed_precision="no" if precision == "fp32" else precision)
    main, world, rank = accelerator.is_main_process, accelerator.num_processes, accelerator.process_index
    say = accelerator.print

    data = recipe["data"]
    tokenizer = load_tokenizer(recipe["model"], recipe["trust_remote_code"])
    train_split, val_split = load_splits(recipe, tokenizer)
    say(train_split.stats.summary("train"))
    say(val_split.stats.summary("validation"))

    stream = SampleStream(train_split, tokenizer, recipe)
    if data["synthetic_fraction"] > 0:  # a question that does not fit its window fails here, before the model loads:
        for index in range(UPFRONT_SAMPLES):  # tasks, names and layouts vary per sample, and with them the length
            stream.synthetic(index)
    torch.manual_seed(recipe["seed"])
    random.seed(recipe["seed"])
    model, _ = build_model(recipe, accelerator.device, precision)
    if recipe["compile_memory"] != "none":
        # Compiled for the training step's window shapes; the in-run evaluations read other lengths, which
        # recompile up to torch's recompile limit and then run eager.
        model.compile_memory(recipe["compile_memory"])
    train_gaps = val_gaps = None
    if data["gap_windows"]:
        say(f"computing the branch inputs of up to {data['gap_pool_windows']} windows per split for data.gap_windows")
        train_gaps = GapPool(model, train_split, recipe)
        val_gaps = GapPool(model, val_split, recipe, VAL_SEED_OFFSET)
    anchors = projection_anchors(model, recipe)
    optimizer = accelerator.prepare(make_optimizer(model, recipe))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, recipe))
    params = list(trainable_parameters(model).values())
    read_probe = read_optimizer = probe = None  # with a read loss: constant LR lr, no clipping, not in the adapter
    if recipe["read_loss_weight"]:
        read_probe = ReadProbe(model)
        read_optimizer = torch.optim.AdamW(read_probe.parameters(), lr=recipe["lr"], betas=tuple(recipe["betas"]))
        probe = (read_probe, read_optimizer)  # what checkpoints save and restore
    if main:
        output_dir.mkdir(parents=True, exist_ok=True)
        tmp = output_dir / f".recipe.yaml.tmp-{os.getpid()}"
        tmp.write_text(dump_recipe(recipe))
        os.replace(tmp, output_dir / "recipe.yaml")
    log = MetricsLog(output_dir, main, recipe["tensorboard"])
    counts = model.parameter_counts()
    say(
        f"trainable {sum(p.numel() for p in params):,} parameters; base {counts['base']:,} frozen; {world} process(es); {precision}"
    )

    step = 0
    if resume is not None:
        checkpoint = latest_checkpoint(output_dir)
        step = load_checkpoint(checkpoint, model, optimizer, scheduler)
        use_recipe_hyperparameters(optimizer, scheduler, recipe)
        say(f"resumed from {checkpoint} at step {step}")
        if probe is not None and not load_read_probe(checkpoint, *probe):
            say("the checkpoint has no read probe (trained without read_loss_weight): the probe starts from zero")
    sample_len = sample_length(recipe)
    syn_weight, nat_weight = 1.0, data["natural_loss_weight"]

    if step == 0 and main and recipe["eval_every"]:
        model.eval()
        result = evaluate(model, val_split, tokenizer, recipe, base_too=True, gap_pool=val_gaps)
        log.log({"type": "eval", "step": 0, **result})
        say(f"eval step 0: {format_eval(result)}")
    last_step = recipe["max_steps"] if stop_at_step is None else stop_at_step
    bar = tqdm(total=last_step, initial=step, disable=not main, desc="train", dynamic_ncols=True)
    started, tokens_done = time.time(), 0
    with _StopFlag() as stop:
        while step < last_step:
            if recipe["max_train_minutes"] and time.time() - started > 60 * recipe["max_train_minutes"]:
                say(f"time budget of {recipe['max_train_minutes']} minutes reached at step {step}; stopping early")
                break
            model.train()
            if not recipe["gradient_checkpointing"]:
                model.base.eval()  # frozen: no dropout; transformers checkpoints only in training mode
            optimizer.zero_grad(set_to_none=True)
            if read_optimizer is not None:
                read_optimizer.zero_grad(set_to_none=True)
            # weighted loss, synthetic answer loss, natural loss, read loss, read accuracy (means over micro-steps)
            parts = torch.zeros(5)
            for micro in range(recipe["grad_accum"]):
                batch = stream.batch(micro_batch_indices(step, micro, rank, recipe, world), accelerator.device)
                kinds = ((batch.syn_ids, batch.syn_labels, syn_weight, 1), (batch.nat_ids, batch.nat_labels, nat_weight, 2))
                for ids, labels, weight, slot in kinds:
                    if ids is None or weight == 0:
                        continue
                    gap = train_gaps.draw(ids.shape[0], data["gap_windows"], [step, micro, rank, slot]) if train_gaps else None
                    read = read_probe is not None and slot == 1  # the read loss asks for the synthetic answers
                    with accelerator.autocast(), captured_reads(model, enabled=read) as sinks:
                        loss = sample_loss(model, ids, labels, gap)
                    # Weighted by its share of the micro-batch: the mean over samples, whatever the process count.
                    share = weight * ids.shape[0] / recipe["batch_size"] / recipe["grad_accum"]
                    total = loss
                    if read:
                        read_loss, read_accuracy = read_probe.loss(model, sinks, labels, gap is not None)
                        total = loss + recipe["read_loss_weight"] * read_loss
                        parts[3] += read_loss.item() / recipe["grad_accum"]
                        parts[4] += read_accuracy.item() / recipe["grad_accum"]
                    accelerator.backward(total * share)
                    parts[0] += loss.item() * share
                    parts[slot] += loss.item() / recipe["grad_accum"]
            if world > 1:
                _average_gradients(params, world)
                if read_probe is not None:
                    _average_gradients(list(read_probe.parameters()), world)
                torch.distributed.all_reduce(parts)
                parts /= world
            loss_total = parts[0].item()
            grad_norm = accelerator.clip_grad_norm_(params, recipe["grad_clip"]) if recipe["grad_clip"] else None
            optimizer.step()
            if read_optimizer is not None:
                read_optimizer.step()
            pull_toward_anchors(model, optimizer, anchors, recipe["projection_anchor"])
            scheduler.step()
            step += 1
            tokens_done += recipe["batch_size"] * recipe["grad_accum"] * world * sample_len
            elapsed = time.time() - started
            bar.update(1)
            bar.set_postfix(loss=f"{loss_total:.4f}", tok_s=f"{tokens_done / elapsed:.0f}")
            if step % recipe["log_every"] == 0 or step == last_step:
                record = {"type": "train", "step": step, "loss": loss_total, "tokens_per_s": tokens_done / elapsed}
                record.update({"loss_synthetic": parts[1].item(), "loss_natural": parts[2].item()})
                if read_probe is not None:
                    record.update({"loss_read": parts[3].item(), "read_accuracy": parts[4].item()})
                record.update({f"lr/{g['name']}": g["lr"] for g in optimizer.param_groups})
                if grad_norm is not None:
                    record["grad_norm"] = float(grad_norm)
                log.log({**record, **gate_stats(model)})
            if recipe["eval_every"] and step % recipe["eval_every"] == 0 and step < last_step and main:
                model.eval()
                result = evaluate(model, val_split, tokenizer, recipe, gap_pool=val_gaps)
                log.log({"type": "eval", "step": step, **result})
                bar.write(f"eval step {step}: {format_eval(result)}")
            signalled = stop.signal is not None
            if world > 1:
                flag = torch.tensor([float(signalled)], device=accelerator.device)
                torch.distributed.all_reduce(flag)
                signalled = bool(flag.item())
            if (recipe["save_every"] and step % recipe["save_every"] == 0) or signalled:
                if main:
                    save_checkpoint(output_dir, step, model, optimizer, scheduler, recipe, probe)
                accelerator.wait_for_everyone()
            if signalled:
                bar.close()
                if main:  # the output folder's adapter is the one at the stop, never an earlier stage's
                    save_final_adapter(model, output_dir, recipe["lora"])
                raise TrainingInterrupted(
                    f"Stopped by signal {stop.signal} at step {step}; its adapter is in {output_dir}; "
                    f"resume with --resume {output_dir}."
                )
    bar.close()
    result: dict[str, Any] = {}
    if main:
        save_checkpoint(output_dir, step, model, optimizer, scheduler, recipe, probe)
        save_final_adapter(model, output_dir, recipe["lora"])
        model.eval()
        result = evaluate(model, val_split, tokenizer, recipe, base_too=True, gap_pool=val_gaps)
        result["train_seconds"] = time.time() - started
        result["steps"] = step
        log.log({"type": "eval", "step": step, **result, **gate_stats(model)})
        say(f"eval step {step}: {format_eval(result)}")
        tmp = output_dir / f".eval.json.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(result, indent=2))
        os.replace(tmp, output_dir / "eval.json")
    accelerator.wait_for_everyone()
    return result


def format_eval(result: dict[str, Any]) -> str:
    """One line: loss by window (model, and base when present) and synthetic accuracy."""
    text = "val loss by window " + " ".join(f"{x:.4f}" for x in result["val_loss_by_window"])
    if "base_val_loss_by_window" in result:
        text += " (windowed base " + " ".join(f"{x:.4f}" for x in result["base_val_loss_by_window"]) + ")"
    if "reset_val_loss_by_window" in result:
        text += " (memory reset every window " + " ".join(f"{x:.4f}" for x in result["reset_val_loss_by_window"]) + ")"
    text += f"; synthetic token acc {result['synthetic_token_accuracy']:.3f}"
    if "reset_synthetic_token_accuracy" in result:
        text += f" (memory reset {result['reset_synthetic_token_accuracy']:.3f})"
    if "base_synthetic_token_accuracy" in result:
        text += f" (windowed base {result['base_synthetic_token_accuracy']:.3f})"
    by_position = result.get("synthetic_accuracy_by_position") or []
    if by_position:
        text += "; by answer token " + " ".join(f"{x:.2f}" for x in by_position)
        text += f"; exact {result['synthetic_exact']:.3f}"
    if "synthetic_end_accuracy" in result:
        text += f"; answer ends with '.' {result['synthetic_end_accuracy']:.3f}"
    if "far_synthetic_token_accuracy" in result:
        far = " ".join(f"{x:.2f}" for x in result["far_synthetic_accuracy_by_position"])
        text += f"; after the longest gap: token acc {result['far_synthetic_token_accuracy']:.3f}, by answer token {far}"
        text += f", exact {result['far_synthetic_exact']:.3f}"
        if "far_synthetic_end_accuracy" in result:
            text += f", ends with '.' {result['far_synthetic_end_accuracy']:.3f}"
    return text
