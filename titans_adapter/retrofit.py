"""The retrofit: a frozen causal LM read window by window, with Titans memory side branches.

At each configured decoder layer a forward hook adds  h <- h + g * W_o(M(q(norm(h))))  to the layer's
output, where M is the layer's NeuralMemory (read with the weights its chunk may see, then written
with the same tokens) and g a per-channel gate initialized to zero, so the retrofitted model starts
exactly at the base model. The base module tree is not changed; hooks pass through when no
TitansModel call is running, and `unload()` removes them.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformers import DynamicCache, PreTrainedModel
from transformers.utils import ModelOutput

from . import generation
from .config import ConfigError, TitansConfig
from .memory import LayerMemoryState, NeuralMemory, l2_normalize
from .models import check_supported
from .state import MemoryState

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_FORMAT = "titans-adapter"
ADAPTER_FORMAT_VERSION = 1
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs")  # torch.compile modes (compile_memory)


class AdapterError(ValueError):
    """An adapter directory is missing, corrupt, or belongs to another base model."""


@dataclass
class TitansOutput(ModelOutput):
    """loss (mean next-token cross-entropy when labels are given), logits (B, T, vocab), memory_state."""

    loss: Tensor | None = None
    logits: Tensor | None = None
    memory_state: MemoryState | None = None


class MemoryBranch(nn.Module):
    """The side branch of one decoder layer: norm -> neural memory -> per-head L2 norm -> output projection -> gate.

    The retrieved vector of each head is L2-normalized (the values it learns to return are unit vectors),
    so however the memory's weights drift over a long stream, the branch adds at most |g| * ||W_o|| * sqrt(H).
    """

    def __init__(self, hidden_size: int, config: TitansConfig, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(hidden_size, eps=eps)
        self.memory = NeuralMemory(hidden_size, config)
        self.out_proj = nn.Linear(config.num_heads * config.head_dim, hidden_size, bias=False)
        self.gate = nn.Parameter(torch.zeros(hidden_size))
        self.read_sink: list[Tensor] | None = None  # when a list, forward appends its normalized reads (training.py)

    def forward(self, hidden: Tensor, state: LayerMemoryState) -> tuple[Tensor, LayerMemoryState]:
        """hidden (B, T, hidden_size) -> hidden plus the gated retrieval, and the written state.

        The norm's scale and the gate are folded into the projection weights instead of multiplying
        every token's vector (the same function; fewer full-width passes, which matters on CPU).
        """
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            retrieved, state = self.read_and_write(hidden, state)  # (B, T, H * head_dim)
            heads = self.memory.config.num_heads
            retrieved = l2_normalize(retrieved.unflatten(-1, (heads, -1))).flatten(-2)
            if self.read_sink is not None:
                self.read_sink.append(retrieved)
            delta = F.linear(retrieved, self.out_proj.weight * self.gate[:, None])
        return hidden + delta.to(hidden.dtype), state

    def compile(self, mode: str = "default", backend: str | Callable = "inductor") -> None:
        """torch.compile read_and_write as one graph per input length (see TitansModel.compile_memory)."""
        if mode not in COMPILE_MODES:
            raise ValueError(f"compile mode must be one of {', '.join(COMPILE_MODES)}, got {mode!r}.")
        self.read_and_write = torch.compile(
            self.read_and_write, mode=None if mode == "default" else mode, backend=backend, fullgraph=True, dynamic=False
        )

    def read_and_write(self, hidden: Tensor, state: LayerMemoryState) -> tuple[Tensor, LayerMemoryState]:
        """The memory's raw retrieval (B, T, H * head_dim) for hidden (B, T, hidden_size), and the written state."""
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            normed = F.rms_norm(hidden.float(), self.norm.normalized_shape, None, self.norm.eps)
            return self.memory(normed, state, input_scale=self.norm.weight)


@dataclass
class _Run:
    """The memory states a running forward pass reads and writes; `skip` leading positions are prefix.

    stop_after: a layer index after whose memory branch the pass stops (no logits are needed and the
    window's KV cache will not be used again), so the layers above it never run.
    """

    states: dict[int, LayerMemoryState]
    skip: int
    stop_after: int | None = None


class _StopForward(Exception):
    """Raised by the top memory hook to end a forward pass whose remaining layers are not needed."""


def base_identity(base: PreTrainedModel) -> dict[str, Any]:
    """What an adapter records about its base, and checks at load."""
    config = base.config
    return {
        "name_or_path": str(config.name_or_path),
        "model_type": config.model_type,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_hidden_layers,
        "vocab_size": config.vocab_size,
    }


class TitansModel(nn.Module):
    """A frozen base causal LM plus Titans memory branches; reads inputs of any length window by window."""

    def __init__(self, base: PreTrainedModel, config: TitansConfig) -> None:
        super().__init__()
        check_supported(base)
        num_layers = base.config.num_hidden_layers
        if max(config.layers) >= num_layers:
            raise ConfigError(
                f"layers {config.layers} out of range: the base model has {num_layers} decoder layers (0..{num_layers - 1})."
            )
        if getattr(base, "_titans_retrofitted", False):
            raise ValueError("This base model is already retrofitted; call unload() on the TitansModel first.")
        self.base = base
        self.config = config
        base.requires_grad_(False)
        hidden = base.config.hidden_size
        eps = getattr(base.config, "rms_norm_eps", 1e-5)
        device = base.get_input_embeddings().weight.device
        self.memories = nn.ModuleDict({str(i): MemoryBranch(hidden, config, eps) for i in config.layers}).to(device)
        self.persistent = None
        if config.persistent_tokens:
            std = base.get_input_embeddings().weight.float().std().item()
            self.persistent = nn.Parameter(torch.randn(config.persistent_tokens, hidden, device=device) * std)
        self._run: _Run | None = None
        # transformers renamed `past_key_values` to `cache` in 5.x; accept either.
        self._cache_kwarg = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
        self._hooks = [base.model.layers[i].register_forward_hook(self._make_hook(i)) for i in config.layers]
        for i in config.layers:  # a recomputed (checkpointed) layer would write its memory twice
            base.model.layers[i].gradient_checkpointing = False
        base._titans_retrofitted = True

    # ----- plumbing -----------------------------------------------------------------------------
    def _make_hook(self, layer: int):
        def hook(module: nn.Module, args: tuple, output: Any) -> Any:
            run = self._run
            if run is None:
                return None
            hidden = output[0] if isinstance(output, tuple) else output
            prefix, tokens = hidden[:, : run.skip], hidden[:, run.skip :]
            if tokens.shape[1] == 0:
                return None
            tokens, run.states[layer] = self.memories[str(layer)](tokens, run.states[layer])
            if run.stop_after == layer:
                raise _StopForward
            hidden = torch.cat([prefix, tokens], dim=1)
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

        return hook

    def unload(self) -> PreTrainedModel:
        """Remove the hooks and return the untouched base model."""
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
        self.base._titans_retrofitted = False
        return self.base

    @property
    def device(self) -> torch.device:
        return self.base.get_input_embeddings().weight.device

    def adapter_parameters(self) -> dict[str, nn.Parameter]:
        """The trainable parameters (the adapter), by name."""
        return {n: p for n, p in self.named_parameters() if not n.startswith("base.")}

    def adapter_state_dict(self) -> dict[str, Tensor]:
        return {n: p.detach().contiguous() for n, p in self.adapter_parameters().items()}

    def gate_parameter_names(self) -> list[str]:
        """Gate parameters (inner-loop gates and output gates): train them with their own, higher LR."""
        return [n for n in self.adapter_parameters() if n.endswith(".gate") or ".to_gates." in n]

    def projection_parameter_names(self) -> list[str]:
        """The memories' input projections (queries, keys, values, bigram context keys): what sets their addressing."""
        return [n for n in self.adapter_parameters() if ".to_qkv." in n or ".to_context_key." in n]

    def parameter_counts(self) -> dict[str, int]:
        trainable = sum(p.numel() for p in self.adapter_parameters().values())
        base = sum(p.numel() for p in self.base.parameters())
        return {"trainable": trainable, "base": base, "total": trainable + base}

    def compile_memory(self, mode: str = "default", backend: str | Callable = "inductor") -> TitansModel:
        """torch.compile every memory branch's read-and-write (projections and the whole chunk loop, unrolled).

        On a GPU the chunk loop is bound by kernel launches, not FLOPs: compiling fuses its elementwise work, and
        mode="reduce-overhead" also replays it as CUDA graphs. mode: one of COMPILE_MODES. It compiles once per
        piece length (dynamic=False), so it suits training and window-sized reads; token-by-token generation would
        recompile per pending length and should stay eager. Returns self.
        """
        for branch in self.memories.values():
            branch.compile(mode, backend)
        return self

    def init_memory_state(self, batch_size: int) -> MemoryState:
        """A fresh stream: every memory at its learned initial weights, nothing read."""
        layers = {i: self.memories[str(i)].memory.initial_state(batch_size, self.device) for i in self.config.layers}
        return MemoryState(layers=layers, window=self.config.window)

    def reset_memory(self, state: MemoryState) -> MemoryState:
        """The same streams at the same place (overlap tokens kept), every memory back at its initial weights: what
        the model does at this point without its past. Only at a window boundary."""
        if state.window_pos:
            raise ValueError(f"reset_memory works at a window boundary; the state is {state.window_pos} tokens into one.")
        fresh = self.init_memory_state(state.batch_size)
        return MemoryState(layers=fresh.layers, tokens_seen=state.tokens_seen, recent_ids=state.recent_ids, window=state.window)

    # ----- generation with memory (titans_adapter.generation) -----------------------------------
    def generate(self, input_ids: Tensor, **kwargs: Any) -> Tensor | generation.GenerateOutput:
        """Continue prompts of any length with the memory; transformers-style arguments (see generation.generate)."""
        return generation.generate(self, input_ids, **kwargs)

    def memorize(self, input_ids: Tensor, memory_state: MemoryState | None = None, **kwargs: Any) -> MemoryState:
        """Read a document of any length into a memory state (see generation.memorize)."""
        return generation.memorize(self, input_ids, memory_state, **kwargs)

    def save_memory(self, state: MemoryState, path: str | os.PathLike, notes: dict[str, Any] | None = None) -> Path:
        """Save a memory state as safetensors tied to this adapter and base (see generation.save_memory)."""
        return generation.save_memory(self, state, path, notes)

    def load_memory(self, path: str | os.PathLike) -> MemoryState:
        """Load a memory state saved for this adapter and base (see generation.load_memory)."""
        return generation.load_memory(self, path)

    # ----- forward ------------------------------------------------------------------------------
    def _window_prefix(self, state: MemoryState, batch_size: int, dtype: torch.dtype) -> Tensor | None:
        """Embeddings put before a new window's tokens: persistent tokens, then the overlap re-read."""
        parts = []
        if self.persistent is not None:
            parts.append(self.persistent.to(dtype).unsqueeze(0).expand(batch_size, -1, -1))
        if self.config.overlap and state.recent_ids is not None and state.tokens_seen > 0:
            parts.append(self.base.get_input_embeddings()(state.recent_ids))
        return torch.cat(parts, dim=1) if parts else None

    def _read_piece(
        self, ids: Tensor, state: MemoryState, need_logits: bool = True, logits_at: Tensor | None = None
    ) -> tuple[Tensor | None, MemoryState]:
        """Read tokens that all fall in the current window. ids (B, n) -> logits (B, n, vocab).

        logits_at (k,), optional: the piece positions whose logits are needed; logits are then (B, k, vocab)
        (the LM head is the costliest layer of a small model, and an answer loss needs a few positions).
        With need_logits False and the window finished by this piece, only the layers up to the top
        memory layer run (they are all the memory needs) and the logits are None.
        """
        embeds = self.base.get_input_embeddings()(ids)
        cache = state.own_cache()
        skip = 0
        if state.window_pos == 0:
            cache = DynamicCache(config=self.base.config)
            prefix = self._window_prefix(state, ids.shape[0], embeds.dtype)
            if prefix is not None:
                skip = prefix.shape[1]
                embeds = torch.cat([prefix, embeds], dim=1)
        past = cache.get_seq_length()
        positions = torch.arange(past, past + embeds.shape[1], device=ids.device).unsqueeze(0)
        tokens_seen = state.tokens_seen + ids.shape[1]
        window_done = tokens_seen % self.config.window == 0
        stop_after = max(self.config.layers) if window_done and not need_logits else None
        run = _Run(states=dict(state.layers), skip=skip, stop_after=stop_after)
        self._run = run
        logits = None
        try:
            kwargs = {self._cache_kwarg: cache}
            if logits_at is not None:
                kwargs["logits_to_keep"] = logits_at + skip
            logits = self.base(inputs_embeds=embeds, position_ids=positions, use_cache=True, **kwargs).logits
            logits = logits if logits_at is not None else logits[:, skip:]
        except _StopForward:
            pass
        finally:
            self._run = None
        recent = state.recent_ids
        if self.config.overlap:
            recent = ids if recent is None else torch.cat([recent, ids], dim=1)
            recent = recent[:, -self.config.overlap :]
        new_state = MemoryState(
            layers=run.states,
            tokens_seen=tokens_seen,
            cache=None if window_done else cache,
            recent_ids=recent,
            window=self.config.window,
        )
        windows_done = tokens_seen // self.config.window
        if window_done and self.config.truncate_bptt and windows_done % self.config.truncate_bptt == 0:
            new_state = new_state.detach()
        return logits, new_state

    def forward(
        self,
        input_ids: Tensor,
        labels: Tensor | None = None,
        memory_state: MemoryState | None = None,
        attention_mask: Tensor | None = None,
        return_logits: bool = True,
    ) -> TitansOutput:
        """Read input_ids (B, T), any T >= 1, window by window, continuing memory_state if given.

        labels (B, T) use the transformers convention: shifted inside the call, -100 ignored.
        return_logits=False keeps only the loss (saves vocab x T floats on long inputs); then windows
        without any label are read only up to the top memory layer (much cheaper: what memorizing needs).
        """
        input_ids = self._check_input(input_ids, attention_mask)
        state = memory_state if memory_state is not None else self.init_memory_state(input_ids.shape[0])
        if state.batch_size != input_ids.shape[0]:
            raise ValueError(f"memory_state holds {state.batch_size} streams but input_ids has batch size {input_ids.shape[0]}.")
        if labels is not None and labels.shape != input_ids.shape:
            raise ValueError(f"labels shape {tuple(labels.shape)} differs from input_ids shape {tuple(input_ids.shape)}.")
        logits_parts: list[Tensor] = []
        loss_sum = torch.zeros((), device=input_ids.device)
        loss_count = 0
        start, total = 0, input_ids.shape[1]
        while start < total:
            n = min(total - start, self.config.window - state.window_pos)
            targets = labels[:, start + 1 : start + n + 1] if labels is not None else None
            has_targets = targets is not None and bool((targets != -100).any())
            logits_at = None
            if has_targets and not return_logits:  # only the positions some row has a target at
                logits_at = (targets != -100).any(dim=0).nonzero().squeeze(1)
                targets = targets[:, logits_at]
            logits, state = self._read_piece(input_ids[:, start : start + n], state, return_logits or has_targets, logits_at)
            if has_targets:
                piece_logits = logits[:, : targets.shape[1]].float()
                loss_sum = loss_sum + F.cross_entropy(
                    piece_logits.flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="sum"
                )
                loss_count += int((targets != -100).sum())
            if return_logits:
                logits_parts.append(logits)
            start += n
        loss = loss_sum / max(loss_count, 1) if labels is not None else None
        logits = torch.cat(logits_parts, dim=1) if return_logits else None
        return TitansOutput(loss=loss, logits=logits, memory_state=state)

    # ----- cached branch inputs (training on long reads) -------------------------------------------
    @torch.no_grad()
    def branch_inputs(self, input_ids: Tensor, batch_windows: int = 32, previous_ids: Tensor | None = None) -> Tensor:
        """The hidden states the memory branch reads for whole windows: (B, n * window) ids -> (B, n * window, hidden).

        Each window runs through the frozen layers up to the memory layer from a fresh start, as forward() reads it;
        the result depends only on the window's tokens (and, with an overlap of o tokens, the o tokens before it), so
        it can be computed once and written into many streams with `write_branch_inputs` (no frozen layer runs then).
        With an overlap, window j > 0 of a row is read after the end of window j - 1, and window 0 after
        previous_ids (B, o) when given (the tokens that preceded it), else cold (a stream's first window).
        """
        layer, window, overlap = self.config.cacheable_layer("Cached branch inputs"), self.config.window, self.config.overlap
        input_ids = self._check_input(input_ids, None)
        B, T = input_ids.shape
        if T % window:
            raise ValueError(f"branch_inputs reads whole windows of {window} tokens; got {T} tokens.")
        windows = input_ids.reshape(B, T // window, window)
        if not overlap:
            return self._layer_outputs(windows.flatten(0, 1), 0, layer, batch_windows).reshape(B, T, -1)
        before = windows[:, :-1, -overlap:]  # (B, n - 1, o): what windows 1.. re-read
        if previous_ids is not None:
            if previous_ids.shape != (B, overlap):
                raise ValueError(f"previous_ids must be (batch {B}, overlap {overlap}), got {tuple(previous_ids.shape)}.")
            before = torch.cat([previous_ids.to(windows.device).unsqueeze(1), before], dim=1)  # (B, n, o)
        parts = []
        if previous_ids is None:
            parts.append(self._layer_outputs(windows[:, 0], 0, layer, batch_windows))  # (B, window, hidden), read cold
        if before.shape[1]:
            prefixed = torch.cat([before, windows[:, windows.shape[1] - before.shape[1] :]], dim=2)  # (B, m, o + window)
            hidden = self._layer_outputs(prefixed.flatten(0, 1), overlap, layer, batch_windows)
            parts.append(hidden.reshape(B, -1, hidden.shape[-1]))
        return torch.cat(parts, dim=1)

    def _layer_outputs(self, rows: Tensor, skip: int, layer: int, batch_rows: int) -> Tensor:
        """Output of decoder `layer` for token rows (m, L) read from a fresh start, without the first `skip` positions."""
        captured: list[Tensor] = []

        def capture(module: nn.Module, args: tuple, output: Any) -> None:
            captured.append((output[0] if isinstance(output, tuple) else output)[:, skip:])
            raise _StopForward

        handle = self.base.model.layers[layer].register_forward_hook(capture)
        try:
            for start in range(0, rows.shape[0], batch_rows):
                try:
                    self.base(input_ids=rows[start : start + batch_rows], use_cache=False)
                except _StopForward:
                    pass
        finally:
            handle.remove()
        return torch.cat(captured)

    def write_branch_inputs(self, hidden: Tensor, memory_state: MemoryState, last_ids: Tensor | None = None) -> MemoryState:
        """Write whole windows of cached branch inputs (B, n * window, hidden) into the memory.

        The state afterwards equals that of forward(ids, memory_state=..., return_logits=False) on the windows the
        inputs came from (`branch_inputs`), gradients through the memory included; the frozen layers do not run.
        With an overlap, last_ids (B, >= overlap) are the windows' last tokens, which the next window re-reads.
        """
        layer, window, overlap = self.config.cacheable_layer("Cached branch inputs"), self.config.window, self.config.overlap
        if memory_state.window_pos:
            raise ValueError(
                f"write_branch_inputs starts at a window boundary; the state is {memory_state.window_pos} tokens into one."
            )
        if hidden.dim() != 3 or hidden.shape[1] % window or hidden.shape[0] != memory_state.batch_size:
            raise ValueError(
                f"hidden must be (batch {memory_state.batch_size}, whole windows of {window}, hidden), got {tuple(hidden.shape)}."
            )
        recent = None
        if overlap:
            if last_ids is None or last_ids.dim() != 2 or last_ids.shape[0] != hidden.shape[0] or last_ids.shape[1] < overlap:
                raise ValueError(f"With an overlap of {overlap}, write_branch_inputs needs last_ids (batch, >= {overlap}).")
            recent = last_ids[:, -overlap:].to(hidden.device)
        state = memory_state
        for start in range(0, hidden.shape[1], window):
            _, layer_state = self.memories[str(layer)].read_and_write(hidden[:, start : start + window], state.layers[layer])
            tokens_seen = state.tokens_seen + window
            state = MemoryState(layers={layer: layer_state}, tokens_seen=tokens_seen, recent_ids=recent, window=window)
            if self.config.truncate_bptt and (tokens_seen // window) % self.config.truncate_bptt == 0:
                state = state.detach()
        return state

    def _check_input(self, input_ids: Tensor, attention_mask: Tensor | None) -> Tensor:
        if not isinstance(input_ids, Tensor):
            raise TypeError(f"input_ids must be a torch.Tensor of token ids, got {type(input_ids).__name__}.")
        if input_ids.dim() == 1:
            input_ids = input_ids.unsqueeze(0)
        if input_ids.dim() != 2 or input_ids.numel() == 0:
            raise ValueError(f"input_ids must be a non-empty (batch, length) tensor, got shape {tuple(input_ids.shape)}.")
        if input_ids.dtype not in (torch.long, torch.int32, torch.int64):
            raise TypeError(f"input_ids must hold integer token ids, got {input_ids.dtype}.")
        if attention_mask is not None and not bool(attention_mask.bool().all()):
            raise ValueError("Padded batches are not read by forward(); pass unpadded sequences (generate() handles padding).")
        return input_ids.to(self.device)

    # ----- adapter files ------------------------------------------------------------------------
    def save_adapter(self, path: str | os.PathLike) -> Path:
        """Write adapter_config.json + adapter_model.safetensors; a crash never leaves a half-written dir."""
        path = Path(path)
        meta = {
            "format": ADAPTER_FORMAT,
            "format_version": ADAPTER_FORMAT_VERSION,
            "titans_config": self.config.to_dict(),
            "base_model": base_identity(self.base),
        }
        write_dir_atomically(
            path,
            {
                ADAPTER_CONFIG: lambda p: p.write_text(json.dumps(meta, indent=2)),
                ADAPTER_WEIGHTS: lambda p: save_file(self.adapter_state_dict(), str(p), metadata={"format": ADAPTER_FORMAT}),
            },
        )
        return path


def write_dir_atomically(path: Path, writers: dict[str, Any]) -> None:
    """Write files into a temporary sibling directory, then swap it in place of `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        for name, write in writers.items():
            write(tmp / name)
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def retrofit(base: PreTrainedModel, config: TitansConfig | None = None) -> TitansModel:
    """Freeze `base` and give it Titans memory branches. At init its outputs equal the base's."""
    return TitansModel(base, config or TitansConfig())


def read_adapter_config(path: str | os.PathLike) -> dict[str, Any]:
    """Parse and validate an adapter directory's adapter_config.json."""
    path = Path(path)
    config_file = path / ADAPTER_CONFIG
    if not path.is_dir() or not config_file.is_file():
        raise AdapterError(f"'{path}' is not an adapter directory: {ADAPTER_CONFIG} not found.")
    try:
        meta = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AdapterError(f"Corrupt {config_file}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != ADAPTER_FORMAT:
        raise AdapterError(f"{config_file} is not a titans-adapter config (missing format '{ADAPTER_FORMAT}').")
    if meta.get("format_version", 0) > ADAPTER_FORMAT_VERSION:
        raise AdapterError(
            f"{config_file} has format version {meta['format_version']}; this library reads up to {ADAPTER_FORMAT_VERSION}."
        )
    return meta


def check_base_matches(recorded: dict[str, Any], base: PreTrainedModel, what: str) -> None:
    """Refuse a file made for a base of another shape (the name alone may differ: local path vs hub id)."""
    actual = base_identity(base)
    mismatched = [k for k in ("model_type", "hidden_size", "num_hidden_layers", "vocab_size") if recorded.get(k) != actual[k]]
    if mismatched:
        details = ", ".join(f"{k}: {recorded.get(k)} vs {actual[k]}" for k in mismatched)
        raise AdapterError(
            f"This {what} was made for base '{recorded.get('name_or_path')}' and does not fit the given base "
            f"'{actual['name_or_path']}' ({details})."
        )


def load_adapter(base: PreTrainedModel, path: str | os.PathLike) -> TitansModel:
    """Retrofit `base` with the adapter saved in `path`, after checking it was made for this base."""
    meta = read_adapter_config(path)
    check_base_matches(meta.get("base_model", {}), base, "adapter")
    try:
        config = TitansConfig.from_dict(meta["titans_config"])
    except (KeyError, TypeError, ConfigError) as exc:
        raise AdapterError(f"Invalid titans_config in {Path(path) / ADAPTER_CONFIG}: {exc}") from exc
    weights_file = Path(path) / ADAPTER_WEIGHTS
    try:
        weights = load_file(str(weights_file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise AdapterError(f"Corrupt or truncated adapter weights {weights_file}: {exc}") from exc
    model = retrofit(base, config)
    expected = model.adapter_state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = [k for k in expected if k in weights and weights[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        model.unload()
        raise AdapterError(
            f"Adapter weights in {weights_file} do not match its config: missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shape {wrong[:5]}."
        )
    model.load_state_dict(weights, strict=False)
    return model
