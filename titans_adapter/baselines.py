"""The systems compared on the same inputs: full attention, windowed base, StreamingLLM, and the retrofit.

Each system scores a token sequence (next-token NLL of every position) and answers a question greedily
after reading a context:

- FullAttention: the base on the whole input, only where it fits the native context (the ceiling).
- WindowedBase: the base reading windows of `window` tokens, positions restarting, no memory (the floor);
  the same windows as the retrofitted model uses.
- StreamingLLM: the base with a KV budget of `window` tokens: `sinks` first tokens (attention sinks) plus
  the most recent tokens. Blockwise approximation, positions restarting inside the budget: for perplexity
  each block of window/2 tokens is recomputed with the sinks and the window/2 - sinks tokens before it, so
  every token sees the sinks and between window/2 - sinks and window - sinks recent tokens; for answers the
  cache holds the sinks and the last tokens of context + question, then grows by the answer; when it
  reaches `window` tokens it is rebuilt from the sinks and the last window/2 - sinks tokens.
- Retrofit: the TitansModel; answers read the context through the memory path, then decode token by token
  with the carried MemoryState (each call continues the stream, including the current window's KV cache).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import DynamicCache, PreTrainedModel

from .retrofit import TitansModel

NLL_CHUNK = 1024  # positions per lm_head call when scoring: bounds the (chunk, vocab) logits in memory


class System(Protocol):
    """What the evaluation needs from a system."""

    name: str

    def supports(self, n_tokens: int) -> bool: ...

    def token_nll(self, ids: Tensor) -> Tensor: ...

    def greedy(self, context_ids: Tensor, question_ids: Tensor, max_new_tokens: int, stop_ids: set[int]) -> list[int]: ...


def _cache_kwarg(base: PreTrainedModel) -> str:
    """transformers 5.x renamed `past_key_values` to `cache` in some models; use whichever forward takes."""
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _device(base: PreTrainedModel) -> torch.device:
    return base.get_input_embeddings().weight.device


def _hidden(base: PreTrainedModel, ids: Tensor) -> Tensor:
    """Last hidden states (T, hidden) of the base on ids (T,), positions from 0."""
    positions = torch.arange(ids.shape[0], device=ids.device).unsqueeze(0)
    return base.model(input_ids=ids.unsqueeze(0), position_ids=positions).last_hidden_state[0]


def _nll_from_hidden(base: PreTrainedModel, hidden: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy of targets (n,) given hidden (n, hidden), computing the lm_head a chunk at a time."""
    head = base.get_output_embeddings()
    out = []
    for s in range(0, targets.shape[0], NLL_CHUNK):
        logits = head(hidden[s : s + NLL_CHUNK]).float()  # (chunk, vocab)
        out.append(F.cross_entropy(logits, targets[s : s + NLL_CHUNK], reduction="none"))
    return torch.cat(out) if out else hidden.new_zeros(0)


def greedy_loop(first_logits: Tensor, step: Callable[[int], Tensor], max_new_tokens: int, stop_ids: set[int]) -> list[int]:
    """Greedy decoding: first_logits (vocab,) -> tokens; step(token) returns the next logits (vocab,).

    Stops after max_new_tokens, or at a stop token once at least one other token was produced.
    """
    out: list[int] = []
    logits = first_logits
    while len(out) < max_new_tokens:
        token = int(logits.argmax())
        out.append(token)
        if token in stop_ids and len(out) > 1:
            break
        if len(out) < max_new_tokens:
            logits = step(token)
    return out


class _CachedBase:
    """Runs the base on a growing KV cache, with positions counted from the cache start."""

    def __init__(self, base: PreTrainedModel) -> None:
        self.base = base
        self.kwarg = _cache_kwarg(base)
        self.cache: DynamicCache | None = None

    def reset(self) -> None:
        self.cache = DynamicCache(config=self.base.config)

    def __call__(self, ids: Tensor) -> Tensor:
        """ids (n,) appended to the cache -> logits of the last position (vocab,)."""
        if self.cache is None:
            self.reset()
        past = self.cache.get_seq_length()
        positions = torch.arange(past, past + ids.shape[0], device=ids.device).unsqueeze(0)
        out = self.base(
            input_ids=ids.unsqueeze(0), position_ids=positions, use_cache=True, logits_to_keep=1, **{self.kwarg: self.cache}
        )
        return out.logits[0, -1].float()


class FullAttention:
    """The base model on the whole input (only where it fits its native context)."""

    name = "full attention"

    def __init__(self, base: PreTrainedModel, max_length: int | None = None) -> None:
        self.base = base
        self.max_length = max_length or int(getattr(base.config, "max_position_embeddings", 2048))

    def supports(self, n_tokens: int) -> bool:
        return n_tokens <= self.max_length

    @torch.no_grad()
    def token_nll(self, ids: Tensor) -> Tensor:
        """ids (T,) -> nll (T-1,) of ids[1:]."""
        ids = ids.to(_device(self.base))
        return _nll_from_hidden(self.base, _hidden(self.base, ids[:-1]), ids[1:])

    @torch.no_grad()
    def greedy(self, context_ids: Tensor, question_ids: Tensor, max_new_tokens: int, stop_ids: set[int]) -> list[int]:
        run = _CachedBase(self.base)
        ids = torch.cat([context_ids, question_ids]).to(_device(self.base))
        first = run(ids)
        return greedy_loop(first, lambda t: run(ids.new_tensor([t])), max_new_tokens, stop_ids)


class WindowedBase:
    """The base reading `window`-token windows with positions restarting and nothing carried across."""

    name = "base windowed"

    def __init__(self, base: PreTrainedModel, window: int) -> None:
        if window < 2:
            raise ValueError(f"window must be >= 2 tokens, got {window}.")
        self.base, self.window = base, window

    def supports(self, n_tokens: int) -> bool:
        return True

    @torch.no_grad()
    def token_nll(self, ids: Tensor) -> Tensor:
        """Window w's positions predict the next token (the last one predicts window w+1's first token)."""
        ids = ids.to(_device(self.base))
        out = []
        for s in range(0, ids.shape[0] - 1, self.window):
            piece = ids[s : s + self.window]
            targets = ids[s + 1 : s + self.window + 1]
            out.append(_nll_from_hidden(self.base, _hidden(self.base, piece)[: targets.shape[0]], targets))
        return torch.cat(out)

    @torch.no_grad()
    def greedy(self, context_ids: Tensor, question_ids: Tensor, max_new_tokens: int, stop_ids: set[int]) -> list[int]:
        ids = torch.cat([context_ids, question_ids]).to(_device(self.base))
        total = ids.shape[0]
        run = _CachedBase(self.base)
        first = run(ids[(total - 1) // self.window * self.window :])

        def step(token: int) -> Tensor:
            nonlocal total
            if total % self.window == 0:  # this token starts a new window: nothing before it is visible
                run.reset()
            total += 1
            return run(ids.new_tensor([token]))

        return greedy_loop(first, step, max_new_tokens, stop_ids)


class StreamingLLM:
    """Sliding window plus attention sinks (blockwise approximation; see the module docstring)."""

    name = "streaming (sinks)"

    def __init__(self, base: PreTrainedModel, window: int, sinks: int = 4) -> None:
        if window < 4 * max(sinks, 1):
            raise ValueError(f"window ({window}) must be at least 4x the number of sinks ({sinks}).")
        self.base, self.window, self.sinks = base, window, sinks
        self.block = window // 2

    def supports(self, n_tokens: int) -> bool:
        return True

    @torch.no_grad()
    def token_nll(self, ids: Tensor) -> Tensor:
        ids = ids.to(_device(self.base))
        recent = self.window - self.block - self.sinks
        out = []
        for s in range(0, ids.shape[0] - 1, self.block):
            sink = ids[: min(self.sinks, s)]
            before = ids[max(sink.shape[0], s - recent) : s]
            piece = torch.cat([sink, before, ids[s : s + self.block]])
            targets = ids[s + 1 : s + self.block + 1]
            hidden = _hidden(self.base, piece)[sink.shape[0] + before.shape[0] :][: targets.shape[0]]
            out.append(_nll_from_hidden(self.base, hidden, targets))
        return torch.cat(out)

    @torch.no_grad()
    def greedy(self, context_ids: Tensor, question_ids: Tensor, max_new_tokens: int, stop_ids: set[int]) -> list[int]:
        ids = torch.cat([context_ids, question_ids]).to(_device(self.base))
        seq = ids.tolist()
        run = _CachedBase(self.base)

        def read(keep: int) -> Tensor:
            """A fresh cache holding the sinks and the last `keep - sinks` tokens of the sequence."""
            run.reset()
            kept = seq if len(seq) <= keep else seq[: self.sinks] + seq[-(keep - self.sinks) :]
            return run(ids.new_tensor(kept))

        def step(token: int) -> Tensor:
            seq.append(token)
            if run.cache.get_seq_length() >= self.window:  # budget full: evict down to sinks + half a window
                return read(self.block)
            return run(ids.new_tensor([token]))

        first = read(self.window - min(max_new_tokens, self.block))
        return greedy_loop(first, step, max_new_tokens, stop_ids)


class Retrofit:
    """The retrofitted TitansModel: reads everything window by window through its memory."""

    name = "retrofit"

    def __init__(self, model: TitansModel) -> None:
        self.model = model
        self.window = model.config.window

    def supports(self, n_tokens: int) -> bool:
        return True

    @torch.no_grad()
    def token_nll(self, ids: Tensor) -> Tensor:
        """Streams the input one window at a time (equal to one call, without the (T, vocab) logits)."""
        ids = ids.to(self.model.device)
        state, prev, out = None, None, []
        for s in range(0, ids.shape[0], self.window):
            piece = ids[s : s + self.window]
            res = self.model(piece.unsqueeze(0), memory_state=state)
            state, logits = res.memory_state, res.logits[0]  # (n, vocab)
            if prev is not None:
                out.append(F.cross_entropy(prev.unsqueeze(0), piece[:1], reduction="none"))
            n = min(piece.shape[0] - 1, ids.shape[0] - 1 - s)
            out.append(F.cross_entropy(logits[:n].float(), ids[s + 1 : s + 1 + n], reduction="none"))
            prev = logits[-1].float()
        return torch.cat(out)

    @torch.no_grad()
    def greedy(self, context_ids: Tensor, question_ids: Tensor, max_new_tokens: int, stop_ids: set[int]) -> list[int]:
        device = self.model.device
        state = self.model(context_ids.to(device).unsqueeze(0), return_logits=False).memory_state
        res = self.model(question_ids.to(device).unsqueeze(0), memory_state=state)

        def step(token: int) -> Tensor:
            nonlocal res
            res = self.model(torch.tensor([[token]], device=device), memory_state=res.memory_state)
            return res.logits[0, -1].float()

        return greedy_loop(res.logits[0, -1].float(), step, max_new_tokens, stop_ids)
