"""Generation with memory: stream any length of context, memorize a document once, keep its memory on disk.

The retrofitted model reads window by window, so generating is reading one more token at a time with the
carried MemoryState: the KV cache never holds more than the current window (plus the persistent and overlap
prefix), and a prompt longer than a window is read window by window into the memory. `generate` follows
transformers' conventions (max_new_tokens, do_sample, temperature, top_k, top_p, repetition_penalty,
eos/pad handling, streamers). Memory states are saved as safetensors with metadata naming the adapter and
base model they belong to and a checksum of every tensor, so a wrong or damaged file is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm
from transformers import (
    GenerationConfig,
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from transformers.utils import ModelOutput

from .state import MemoryState

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from .retrofit import TitansModel

STATE_FORMAT = "titans-memory-state"
STATE_FORMAT_VERSION = 1
DEFAULT_MAX_NEW_TOKENS = 20  # transformers' default length budget
DEFAULT_PIECE_WINDOWS = 8


class MemoryStateError(ValueError):
    """A memory state file is missing, corrupt, truncated, or belongs to another adapter or base model."""


@dataclass
class GenerateOutput(ModelOutput):
    """sequences (B, prompt + new tokens), left padding kept, finished rows padded with pad_token_id.

    memory_state: the state after reading the prompt and every generated token (batched, unpadded input).
    row_memory_states: one state per row instead, for a padded batch (its rows were read as separate streams).
    """

    sequences: Tensor | None = None
    memory_state: MemoryState | None = None
    row_memory_states: list[MemoryState] | None = None


# ----- fingerprints ------------------------------------------------------------------------------------
def tensors_sha256(tensors: dict[str, Tensor]) -> str:
    """A checksum over names, dtypes, shapes and bytes of the tensors (order independent)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def adapter_fingerprint(model: TitansModel) -> str:
    """sha256 of the adapter's config and weights: a memory state is only valid for this exact adapter."""
    digest = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    digest.update(tensors_sha256(model.adapter_state_dict()).encode())
    return digest.hexdigest()


# ----- memorize ------------------------------------------------------------------------------------------
def _as_batch(input_ids: Tensor | Sequence[int], what: str) -> Tensor:
    """Token ids (T,) or (B, T) -> (B, T) long; empty input is an error naming `what`."""
    if not isinstance(input_ids, Tensor):
        input_ids = torch.tensor(list(input_ids), dtype=torch.long)
    if input_ids.dim() == 1:
        input_ids = input_ids.unsqueeze(0)
    if input_ids.dim() != 2:
        raise ValueError(f"{what} must be token ids of shape (length,) or (batch, length), got {tuple(input_ids.shape)}.")
    if input_ids.shape[1] == 0:
        raise ValueError(f"The {what} is empty: there is nothing to read.")
    return input_ids.long()


@torch.no_grad()
def memorize(
    model: TitansModel,
    input_ids: Tensor | Sequence[int],
    memory_state: MemoryState | None = None,
    *,
    piece_windows: int = DEFAULT_PIECE_WINDOWS,
    progress: bool = False,
    desc: str = "memorize",
) -> MemoryState:
    """Read a document of any length into the memory and return the state (the input state is not changed).

    input_ids (T,) or (B, T). Windows completed here run only up to the top memory layer (no logits are
    needed); the last, unfinished window runs through all layers so that its KV cache can be continued.
    The input is read `piece_windows` windows per call, with a progress bar in tokens/s if `progress`.
    """
    ids = _as_batch(input_ids, "document").to(model.device)
    if piece_windows < 1:
        raise ValueError(f"piece_windows must be >= 1, got {piece_windows}.")
    state = memory_state.copy() if memory_state is not None else model.init_memory_state(ids.shape[0])
    if state.batch_size != ids.shape[0]:
        raise ValueError(f"memory_state holds {state.batch_size} streams but the document batch has {ids.shape[0]}.")
    piece = piece_windows * model.config.window
    total = ids.shape[1]
    with tqdm(total=total, unit="tok", unit_scale=True, desc=desc, disable=not progress) as bar:
        start = 0
        while start < total:
            # End pieces on window boundaries of the stream, so every full window skips the upper layers.
            end = min(total, start + piece - state.window_pos)
            state = model(ids[:, start:end], memory_state=state, return_logits=False).memory_state.detach()
            bar.update(end - start)
            start = end
    return state


# ----- generate ------------------------------------------------------------------------------------------
def resolve_generation_config(model: TitansModel, generation_config: GenerationConfig | None, **kwargs: Any) -> GenerationConfig:
    """The base model's generation config (or the given one) updated with kwargs; unknown kwargs fail."""
    config = GenerationConfig.from_dict((generation_config or model.base.generation_config).to_dict())
    unused = config.update(**kwargs)
    if unused:
        raise TypeError(f"generate() got unknown arguments {sorted(unused)}; use GenerationConfig field names.")
    if (config.num_beams or 1) > 1 or (config.num_return_sequences or 1) > 1:
        raise NotImplementedError("Only greedy decoding and sampling are supported (num_beams=1, num_return_sequences=1).")
    if config.max_new_tokens is None:
        config.max_new_tokens = DEFAULT_MAX_NEW_TOKENS
    if config.max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {config.max_new_tokens}.")
    if config.do_sample and config.temperature is not None and config.temperature <= 0:
        raise ValueError(f"temperature must be > 0 when sampling, got {config.temperature}.")
    if config.top_p is not None and not 0 < config.top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {config.top_p}.")
    return config


def logits_processors(config: GenerationConfig) -> LogitsProcessorList:
    """transformers' processors for the supported knobs; the sampling warpers only apply when do_sample."""
    processors = LogitsProcessorList()
    if config.repetition_penalty is not None and config.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(config.repetition_penalty))
    if config.do_sample:
        if config.temperature is not None and config.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(config.temperature))
        top_k = 50 if config.top_k is None else config.top_k  # transformers' default
        if top_k > 0:
            processors.append(TopKLogitsWarper(top_k))
        if config.top_p is not None and config.top_p < 1.0:
            processors.append(TopPLogitsWarper(config.top_p))
    return processors


def _eos_ids(config: GenerationConfig) -> list[int]:
    eos = config.eos_token_id
    if eos is None:
        return []
    return [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]


def _pad_id(config: GenerationConfig) -> int:
    if config.pad_token_id is not None:
        return int(config.pad_token_id)
    eos = _eos_ids(config)
    return eos[0] if eos else 0


def _start_state(model: TitansModel, memory_state: MemoryState | None, batch_size: int) -> MemoryState:
    """A private copy of memory_state for `batch_size` streams (a one-stream state is shared by all rows)."""
    if memory_state is None:
        return model.init_memory_state(batch_size)
    if memory_state.batch_size == batch_size:
        return memory_state.copy()
    if memory_state.batch_size == 1:
        return memory_state.expand(batch_size)
    raise ValueError(f"memory_state holds {memory_state.batch_size} streams; the prompts need 1 or {batch_size}.")


@torch.no_grad()
def stream_tokens(
    model: TitansModel,
    input_ids: Tensor,
    memory_state: MemoryState | None = None,
    generation_config: GenerationConfig | None = None,
) -> Iterator[tuple[Tensor, MemoryState]]:
    """Yield each step's new tokens (B,) with the state that has read everything before them.

    input_ids (B, T) unpadded, T >= 1. Rows that produced an EOS get pad_token_id afterwards (and read it,
    as in transformers); the iteration stops when every row is finished or after max_new_tokens.
    """
    config = generation_config or resolve_generation_config(model)
    ids = _as_batch(input_ids, "prompt").to(model.device)
    processors = logits_processors(config)
    eos = torch.tensor(_eos_ids(config), dtype=torch.long, device=ids.device)
    pad = _pad_id(config)
    state = _start_state(model, memory_state, ids.shape[0])
    if ids.shape[1] > 1:
        state = memorize(model, ids[:, :-1], state)
    out = model(ids[:, -1:], memory_state=state)
    state = out.memory_state
    sequences = ids
    finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    for step in range(config.max_new_tokens):
        scores = processors(sequences, out.logits[:, -1].float())
        if config.do_sample:
            tokens = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
        else:
            tokens = scores.argmax(dim=-1)
        tokens = torch.where(finished, torch.full_like(tokens, pad), tokens)
        yield tokens, state
        sequences = torch.cat([sequences, tokens[:, None]], dim=1)
        if eos.numel():
            finished = finished | torch.isin(tokens, eos)
        if bool(finished.all()) or step == config.max_new_tokens - 1:
            return
        out = model(tokens[:, None], memory_state=state)
        state = out.memory_state


def _left_padded_rows(input_ids: Tensor, attention_mask: Tensor) -> list[Tensor] | None:
    """The unpadded rows of a left-padded batch, or None when nothing is padded; right padding fails."""
    if attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask shape {tuple(attention_mask.shape)} differs from input_ids {tuple(input_ids.shape)}.")
    mask = attention_mask.bool()
    if bool(mask.all()):
        return None
    rows = []
    for i in range(mask.shape[0]):
        n = int(mask[i].sum())
        if n == 0:
            raise ValueError(f"Row {i} of the batch is all padding: an empty prompt cannot be continued.")
        if not bool(mask[i, -n:].all()):
            raise ValueError("generate() needs left padding (tokenizer.padding_side = 'left'); the attention_mask is not.")
        rows.append(input_ids[i, -n:])
    return rows


@torch.no_grad()
def generate(
    model: TitansModel,
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    memory_state: MemoryState | None = None,
    generation_config: GenerationConfig | None = None,
    streamer: Any | None = None,
    return_dict_in_generate: bool = False,
    **kwargs: Any,
) -> Tensor | GenerateOutput:
    """Continue input_ids (B, T) of any length, after memory_state if given (it is not changed).

    kwargs are GenerationConfig fields (max_new_tokens, do_sample, temperature, top_k, top_p,
    repetition_penalty, eos_token_id, pad_token_id) over the base model's generation config. Returns the
    sequences (B, T + new), or a GenerateOutput holding also the state after reading everything, which can
    be continued or saved. A left-padded batch (attention_mask with zeros) is read as one stream per row,
    and the outputs are left-padded as given; a one-stream memory_state is shared by every row.
    """
    config = resolve_generation_config(model, generation_config, **kwargs)
    ids = _as_batch(input_ids, "prompt").to(model.device)
    if streamer is not None and ids.shape[0] > 1:
        raise ValueError("A streamer only supports batch size 1.")
    rows = _left_padded_rows(ids, attention_mask.to(ids.device)) if attention_mask is not None else None
    if rows is not None:
        return _generate_padded(model, ids, rows, memory_state, config, return_dict_in_generate)
    if streamer is not None:
        streamer.put(ids.cpu())
    new_tokens: list[Tensor] = []
    state = None
    for tokens, step_state in stream_tokens(model, ids, memory_state, config):
        new_tokens.append(tokens)
        state = step_state
        if streamer is not None:
            streamer.put(tokens.cpu())
    if streamer is not None:
        streamer.end()
    sequences = torch.cat([ids, torch.stack(new_tokens, dim=1)], dim=1)
    if not return_dict_in_generate:
        return sequences
    # The last token was sampled but not read yet: read it, so the state covers the whole sequence.
    state = model(new_tokens[-1][:, None], memory_state=state, return_logits=False).memory_state
    return GenerateOutput(sequences=sequences, memory_state=state)


def _generate_padded(
    model: TitansModel,
    ids: Tensor,
    rows: list[Tensor],
    memory_state: MemoryState | None,
    config: GenerationConfig,
    return_dict: bool,
) -> Tensor | GenerateOutput:
    """Generate each row of a left-padded batch as its own stream, then pad the new tokens on the right."""
    if memory_state is not None and memory_state.batch_size not in (1, len(rows)):
        raise ValueError(f"memory_state holds {memory_state.batch_size} streams; the prompts need 1 or {len(rows)}.")
    outputs = []
    for i, row in enumerate(rows):
        row_state = None
        if memory_state is not None:
            row_state = memory_state if memory_state.batch_size == 1 else memory_state.select([i])
        outputs.append(generate(model, row[None], memory_state=row_state, generation_config=config, return_dict_in_generate=True))
    new = [out.sequences[0, row.shape[0] :] for out, row in zip(outputs, rows)]
    width = max(t.shape[0] for t in new)
    padded = torch.full((len(rows), width), _pad_id(config), dtype=ids.dtype, device=ids.device)
    for i, t in enumerate(new):
        padded[i, : t.shape[0]] = t
    sequences = torch.cat([ids, padded], dim=1)
    if not return_dict:
        return sequences
    return GenerateOutput(sequences=sequences, row_memory_states=[out.memory_state for out in outputs])


# ----- memory state files ------------------------------------------------------------------------------
def save_memory(model: TitansModel, state: MemoryState, path: str | os.PathLike, notes: dict[str, Any] | None = None) -> Path:
    """Write `state` as safetensors with metadata (adapter, base, tokens read, checksum); temp file + rename.

    notes: extra JSON-serializable facts to keep (e.g. the documents read), returned by read_memory_metadata.
    """
    from .retrofit import base_identity

    path = Path(path)
    tensors = state.to_tensors()
    metadata = {
        "format": STATE_FORMAT,
        "format_version": str(STATE_FORMAT_VERSION),
        "tokens_seen": str(state.tokens_seen),
        "window": str(state.window),
        "batch_size": str(state.batch_size),
        "chunks_written": json.dumps({str(i): s.chunks_written for i, s in state.layers.items()}),
        "adapter_sha256": adapter_fingerprint(model),
        "titans_config": json.dumps(model.config.to_dict()),
        "base_model": json.dumps(base_identity(model.base)),
        "tensors_sha256": tensors_sha256(tensors),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "notes": json.dumps(notes or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_memory_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of a memory state file, decoded; refuses a file that is not one."""
    path = Path(path)
    if not path.is_file():
        raise MemoryStateError(f"Memory state file '{path}' not found.")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise MemoryStateError(f"Corrupt or truncated memory state file '{path}': {exc}") from exc
    if raw.get("format") != STATE_FORMAT:
        raise MemoryStateError(f"'{path}' is not a titans memory state (metadata format is {raw.get('format')!r}).")
    try:
        meta: dict[str, Any] = dict(raw)
        meta["format_version"] = int(raw["format_version"])
        for key in ("tokens_seen", "window", "batch_size"):
            meta[key] = int(raw[key])
        for key in ("chunks_written", "titans_config", "base_model", "notes"):
            meta[key] = json.loads(raw[key])
    except (KeyError, ValueError) as exc:
        raise MemoryStateError(f"Corrupt metadata in memory state file '{path}': {type(exc).__name__}: {exc}") from exc
    if meta["format_version"] > STATE_FORMAT_VERSION:
        raise MemoryStateError(
            f"'{path}' has memory state format version {meta['format_version']}; this library reads up to {STATE_FORMAT_VERSION}."
        )
    return meta


def load_memory(model: TitansModel, path: str | os.PathLike) -> MemoryState:
    """Load a state saved by save_memory, after checking it belongs to this adapter and base and is intact."""
    from .retrofit import AdapterError, check_base_matches

    path = Path(path)
    meta = read_memory_metadata(path)
    try:
        check_base_matches(meta["base_model"], model.base, "memory state")
    except AdapterError as exc:
        raise MemoryStateError(f"{path}: {exc}") from exc
    if meta["adapter_sha256"] != adapter_fingerprint(model):
        same_config = meta["titans_config"] == model.config.to_dict()
        raise MemoryStateError(
            f"Memory state '{path}' was written with another adapter (fingerprint {meta['adapter_sha256'][:12]}, "
            f"this model's is {adapter_fingerprint(model)[:12]}; "
            f"{'same config, different weights' if same_config else 'different config'}). "
            "Load the adapter it was made with, or memorize the documents again."
        )
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise MemoryStateError(f"Corrupt or truncated memory state file '{path}': {exc}") from exc
    if tensors_sha256(tensors) != meta["tensors_sha256"]:
        raise MemoryStateError(f"Corrupt memory state file '{path}': its tensors do not match the checksum written with them.")
    try:
        state = MemoryState.from_tensors(
            tensors,
            tokens_seen=meta["tokens_seen"],
            window=meta["window"],
            depth=model.config.memory_depth,
            chunks_written={int(k): int(v) for k, v in meta["chunks_written"].items()},
        )
    except KeyError as exc:
        raise MemoryStateError(f"Corrupt memory state file '{path}': tensor {exc} is missing.") from exc
    _check_state_fits(model, state, path)
    return state.copy()


def _check_state_fits(model: TitansModel, state: MemoryState, path: Path) -> None:
    """Shapes and window position consistent with the model (a last guard against a mangled file)."""
    problems = []
    if sorted(state.layers) != sorted(model.config.layers):
        problems.append(f"memory layers {sorted(state.layers)} vs {sorted(model.config.layers)}")
    for i, s in state.layers.items():
        if str(i) not in model.memories:
            continue
        for k, (w, w0) in enumerate(zip(s.weights, model.memories[str(i)].memory.initial_weights)):
            if tuple(w.shape[1:]) != tuple(w0.shape):
                problems.append(f"layer {i} weight {k} shape {tuple(w.shape)}")
    prefix = model.config.persistent_tokens + (model.config.overlap if state.tokens_seen >= state.window else 0)
    expected_cache = state.window_pos + prefix if state.window_pos else 0
    cached = state.cache.layers[0].keys.shape[-2] if state.cache is not None else 0
    if cached != expected_cache:
        problems.append(f"KV cache of {cached} positions where the window position needs {expected_cache}")
    if state.cache is not None and len(state.cache.layers) != model.base.config.num_hidden_layers:
        problems.append(f"KV cache of {len(state.cache.layers)} layers")
    if problems:
        raise MemoryStateError(f"Memory state '{path}' does not fit this model: {'; '.join(problems)}.")


# ----- chat ----------------------------------------------------------------------------------------------
class ChatSession:
    """A conversation whose every turn is read into one growing memory state (no history is re-read).

    Each turn feeds only its new text: with a chat template, the part of the rendered conversation that
    follows what was already read (so the system prompt comes once); without one, the raw text + newline.
    """

    def __init__(
        self,
        model: TitansModel,
        tokenizer: PreTrainedTokenizerBase,
        memory_state: MemoryState | None = None,
        use_chat_template: bool = True,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.state = memory_state
        self.use_template = use_chat_template and bool(getattr(tokenizer, "chat_template", None))
        self.messages: list[dict[str, str]] = []
        self.rendered = ""
        self.turns = 0

    @property
    def tokens_read(self) -> int:
        return self.state.tokens_seen if self.state is not None else 0

    def turn_text(self, user_text: str) -> str:
        """The text to feed for a new user message."""
        if not self.use_template:
            return user_text + "\n"
        render = self.tokenizer.apply_chat_template(
            [*self.messages, {"role": "user", "content": user_text}], add_generation_prompt=True, tokenize=False
        )
        if render.startswith(self.rendered):
            return render[len(self.rendered) :]
        # A template that is not prefix-stable: feed this turn alone.
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": user_text}], add_generation_prompt=True, tokenize=False
        )

    def ask(self, user_text: str, streamer: Any | None = None, **kwargs: Any) -> str:
        """Read the user's message, generate the answer (also read), and return its text."""
        if not user_text.strip():
            raise ValueError("The prompt is empty: type a message.")
        text = self.turn_text(user_text)
        ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
        out = generate(self.model, ids, memory_state=self.state, streamer=streamer, return_dict_in_generate=True, **kwargs)
        new = out.sequences[0, ids.shape[1] :]
        answer = self.tokenizer.decode(new, skip_special_tokens=True)
        self.state = out.memory_state
        self.turns += 1
        if self.use_template:
            self.rendered += text + self.tokenizer.decode(new)
            self.messages += [{"role": "user", "content": user_text}, {"role": "assistant", "content": answer}]
        return answer


# ----- what the scripts share ----------------------------------------------------------------------------
UNTRAINED_SEED = 0  # an untrained retrofit is seeded, so memorize.py and generate.py build the same adapter


def load_generation_model(
    model_name: str = "default", adapter: str | os.PathLike | None = None
) -> tuple[TitansModel, PreTrainedTokenizerBase, str]:
    """The base model with its adapter, or with a seeded untrained retrofit if none; plus a note saying which."""
    from .config import TitansConfig
    from .models import load_base_model
    from .retrofit import load_adapter, retrofit

    base, tokenizer = load_base_model(model_name)
    if adapter is not None:
        return load_adapter(base, adapter), tokenizer, f"adapter {adapter}"
    torch.manual_seed(UNTRAINED_SEED)
    layers = [min(TitansConfig().layers[0], base.config.num_hidden_layers - 1)]
    model = retrofit(base, TitansConfig(layers=layers))
    note = (
        "no --adapter: untrained retrofit (output gate zero), so the memory does not change the outputs yet; "
        f"attention sees only the current window of {model.config.window} tokens"
    )
    return model, tokenizer, note


def read_text_file(path: str | os.PathLike) -> str:
    """A UTF-8 text document; a missing, non-text or empty file is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Document '{path}' not found.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"Document '{path}' is not UTF-8 text: {exc}") from exc
    if not text.strip():
        raise ValueError(f"Document '{path}' is empty: there is nothing to memorize.")
    return text


def dataset_texts(
    name: str,
    split: str = "train",
    text_field: str = "text",
    config_name: str | None = None,
    data_files: str | list[str] | None = None,
    max_docs: int | None = None,
) -> Iterator[str]:
    """Texts of a `datasets` source (hub name, or a builder like 'json' with data_files), streamed."""
    from datasets import load_dataset

    dataset = load_dataset(name, config_name, data_files=data_files, split=split, streaming=True)
    for i, row in enumerate(dataset):
        if max_docs is not None and i >= max_docs:
            return
        if text_field not in row:
            raise ValueError(f"Dataset rows have no field '{text_field}'; fields: {sorted(row)}. Pass --text-field.")
        if str(row[text_field]).strip():
            yield str(row[text_field])


def memorize_texts(
    model: TitansModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Iterator[str] | Sequence[str],
    memory_state: MemoryState | None = None,
    progress: bool = True,
) -> tuple[MemoryState, int]:
    """Read texts one after another into one memory (separated by a blank line); returns the state and texts read."""
    state, count = memory_state, 0
    for text in texts:
        if not text.strip():
            raise ValueError("A document is empty: there is nothing to memorize.")
        if state is not None and state.tokens_seen:
            text = "\n\n" + text
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
        state = memorize(model, ids, state, progress=progress, desc=f"doc {count + 1}")
        count += 1
    if state is None:
        raise ValueError("No document given: pass --doc FILE or --dataset NAME.")
    return state, count
