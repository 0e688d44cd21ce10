"""lm-evaluation-harness integration: a retrofitted model as an `lm-eval` model ("titans").

TitansLM subclasses lm-eval's HFLM and hands it the frozen base (a PreTrainedModel, so the tokenizer,
batching and request plumbing work unchanged), but sends every forward pass through the TitansModel:
loglikelihood requests read their inputs window by window with the memory, and generation decodes
greedily token by token through the memory path. The context limit is lifted (max_length 2**20 by
default), so long-context tasks are not truncated to the base's native context.

Python:
    lm = TitansLM(pretrained="default", adapter="adapters/x")
    lm_eval.simple_evaluate(model=lm, tasks=[...])
Command line (registers the model, then runs the lm-eval CLI with the remaining arguments):
    python -m titans_adapter.lm_eval --model titans --model_args pretrained=default,adapter=adapters/x --tasks ...
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .baselines import greedy_loop
from .models import load_base_model
from .retrofit import TitansModel, load_adapter

DEFAULT_MAX_LENGTH = 2**20


class _Stop(Exception):
    """Ends a greedy decode at an end-of-text token or a stop string."""


@register_model("titans")
class TitansLM(HFLM):
    """An lm-eval model: a base with (or, without `adapter`, as a plain windowed read: no) Titans memory.

    pretrained: a TitansModel, or a base name for `load_base_model` ("default", a directory, a hub id).
    adapter: adapter directory loaded onto the base (needed unless `pretrained` is a TitansModel).
    """

    def __init__(
        self,
        pretrained: str | TitansModel = "default",
        adapter: str | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        max_length: int | None = None,
        batch_size: int | str = 1,
        device: str | None = None,
        dtype: str | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(pretrained, TitansModel):
            if adapter is not None:
                raise ValueError("Pass either a TitansModel or an adapter directory, not both.")
            model = pretrained
            if tokenizer is None:
                raise ValueError("A TitansModel needs its tokenizer: TitansLM(model, tokenizer=...).")
        elif isinstance(pretrained, str):
            if adapter is None:
                raise ValueError(
                    "TitansLM needs an adapter directory (adapter=...); for the base alone use lm-eval's 'hf' model."
                )
            if device is None or (str(device).startswith("cuda") and not torch.cuda.is_available()):
                device = "cuda" if torch.cuda.is_available() else "cpu"  # lm-eval's CLI passes device="cuda" by default
            base, loaded_tokenizer = load_base_model(pretrained, dtype=dtype, device=device)
            model = load_adapter(base, adapter)
            tokenizer = tokenizer or loaded_tokenizer
        else:
            raise TypeError(f"pretrained must be a TitansModel or a model name, got {type(pretrained).__name__}.")
        base: PreTrainedModel = model.base
        super().__init__(
            pretrained=base, tokenizer=tokenizer, max_length=max_length or DEFAULT_MAX_LENGTH, batch_size=batch_size, **kwargs
        )
        self.titans = model
        self.titans.eval()

    def _model_call(
        self, inps: torch.Tensor, attn_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """inps (B, T), right-padded by lm-eval (padding after the real tokens cannot change them) -> logits (B, T, vocab)."""
        if attn_mask is not None or labels is not None:
            raise ValueError("TitansLM is a decoder-only model; seq2seq calls are not supported.")
        with torch.no_grad():
            return self.titans(inps).logits

    def _model_generate(self, context: torch.Tensor, max_length: int, stop: list[str], **generation_kwargs: Any) -> torch.Tensor:
        """Greedy generation through the memory path, one stream at a time (the left padding is removed).

        context (B, T) left-padded -> (B, T + new) with the generated tokens after each row's context.
        """
        if generation_kwargs.get("do_sample") or float(generation_kwargs.get("temperature", 0.0) or 0.0) > 0:
            raise ValueError("TitansLM generates greedily only (do_sample=False, temperature=0).")
        mask = generation_kwargs.get("attention_mask")
        max_new = max(max_length - context.shape[1], 1)
        eos = {self.tokenizer.eos_token_id} if self.tokenizer.eos_token_id is not None else set()
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else next(iter(eos), 0)
        rows = []
        for b in range(context.shape[0]):
            ids = context[b][mask[b].bool()] if mask is not None else context[b]
            rows.append(self._greedy_row(ids, max_new, stop, eos))
        width = max(len(r) for r in rows)
        out = torch.full((context.shape[0], context.shape[1] + width), pad, dtype=context.dtype, device=context.device)
        out[:, : context.shape[1]] = context
        for b, row in enumerate(rows):
            out[b, context.shape[1] : context.shape[1] + len(row)] = torch.tensor(row, dtype=context.dtype)
        return out

    @torch.no_grad()
    def _greedy_row(self, ids: torch.Tensor, max_new: int, stop: list[str], eos: set[int]) -> list[int]:
        """Read ids (T,) and decode until max_new tokens, an end-of-text token, or a stop string."""
        res = self.titans(ids.unsqueeze(0))
        produced: list[int] = []

        def step(token: int) -> torch.Tensor:
            nonlocal res
            produced.append(token)
            text = self.tokenizer.decode(produced, skip_special_tokens=True)
            if token in eos or any(s and s in text for s in stop):
                raise _Stop
            res = self.titans(torch.tensor([[token]], device=ids.device), memory_state=res.memory_state)
            return res.logits[0, -1].float()

        try:
            tokens = greedy_loop(res.logits[0, -1].float(), step, max_new, set())
        except _Stop:
            tokens = produced
        return tokens


def main(argv: list[str] | None = None) -> None:
    """Run the lm-eval command line with the 'titans' model registered."""
    from lm_eval.__main__ import cli_evaluate

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    cli_evaluate()


if __name__ == "__main__":
    main()
