"""Shared fixtures: tiny random Llama models built from configs (no hub, seconds)."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from titans_adapter import TitansConfig, retrofit


def tiny_llama(seed: int = 0, hidden: int = 64, layers: int = 2, vocab: int = 128) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    config.name_or_path = f"tiny-llama-{hidden}x{layers}"
    return LlamaForCausalLM(config).eval()


def tiny_config(**overrides) -> TitansConfig:
    values = dict(layers=[0], window=32, chunk_size=8, num_heads=2, head_dim=16)
    values.update(overrides)
    return TitansConfig(**values)


def open_gates(model) -> None:
    """Give the zero-initialized output gates random values so the memory path shows in the logits."""
    torch.manual_seed(1)
    with torch.no_grad():
        for branch in model.memories.values():
            branch.gate.normal_()


@pytest.fixture
def tiny_base() -> LlamaForCausalLM:
    return tiny_llama()


@pytest.fixture
def tiny_model(tiny_base):
    model = retrofit(tiny_base, tiny_config())
    open_gates(model)
    return model
