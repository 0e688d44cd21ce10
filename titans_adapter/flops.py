"""Analytical FLOPs per token of the Titans memory and of a Llama-style base model.

Counts multiply-adds as 2 FLOPs and only matmuls (elementwise work is a few percent and is left out).
The outer backward of a matmul chain costs about twice its forward (gradients to both operands), so
forward + backward = 3 x forward, for the memory and for the base alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import TitansConfig


@dataclass
class MemoryFlops:
    """FLOPs per token of one memory layer, split by what they do."""

    projections: float  # q, k, v, gates and the output projection
    retrieve: float  # M_W(q): the MLP forward on the queries
    write: float  # forward on the keys + closed-form weight gradients + momentum/forget per chunk
    forward: float  # projections + retrieve + write
    forward_backward: float  # forward + the outer backward through all of it

    def as_dict(self) -> dict[str, float]:
        return dict(vars(self))


def mlp_dims(config: TitansConfig) -> list[tuple[int, int]]:
    """(d_in, d_out) of each layer of the per-head memory MLP."""
    dims = [config.head_dim] + [config.memory_hidden] * (config.memory_depth - 1) + [config.head_dim]
    return list(zip(dims[:-1], dims[1:]))


def memory_flops(dim: int, config: TitansConfig) -> MemoryFlops:
    """FLOPs per token of one NeuralMemory (plus its output projection) over model width `dim`."""
    heads, head_dim = config.num_heads, config.head_dim
    layers = mlp_dims(config)
    mlp_forward = sum(2 * a * b for a, b in layers)  # per token and head
    # Weight gradients: one (d_in x rows) @ (rows x d_out) per layer; error back-propagation: every layer but the first.
    grads = sum(2 * a * b for a, b in layers)
    backprop = sum(2 * a * b for a, b in layers[1:])
    # Momentum and forgetting: ~4 FLOPs per memory weight once per chunk, spread over the chunk's tokens.
    params = sum(a * b for a, b in layers)
    recurrence = 4 * params / config.chunk_size
    projections = 2 * dim * 3 * heads * head_dim + 2 * dim * 3 * heads + 2 * heads * head_dim * dim
    retrieve = heads * mlp_forward
    write = heads * (mlp_forward + grads + backprop + recurrence)
    forward = projections + retrieve + write
    return MemoryFlops(projections, retrieve, write, forward, 3 * forward)


def base_flops_per_token(
    hidden: int,
    layers: int,
    intermediate: int,
    heads: int,
    kv_heads: int,
    vocab: int,
    context: float,
    with_lm_head: bool = True,
) -> float:
    """Forward FLOPs per token of a Llama-style decoder; `context` is the mean number of keys a query attends to."""
    head_dim = hidden // heads
    attn_proj = 2 * hidden * (heads * head_dim + 2 * kv_heads * head_dim) + 2 * heads * head_dim * hidden
    mlp = 2 * 3 * hidden * intermediate
    attention = 2 * 2 * heads * head_dim * context  # scores and weighted values
    total = layers * (attn_proj + mlp + attention)
    if with_lm_head:
        total += 2 * hidden * vocab
    return float(total)


def base_flops_from_config(config, context: float, with_lm_head: bool = True) -> float:
    """base_flops_per_token from a transformers LlamaConfig-like object."""
    return base_flops_per_token(
        hidden=config.hidden_size,
        layers=config.num_hidden_layers,
        intermediate=config.intermediate_size,
        heads=config.num_attention_heads,
        kv_heads=getattr(config, "num_key_value_heads", None) or config.num_attention_heads,
        vocab=config.vocab_size,
        context=context,
        with_lm_head=with_lm_head,
    )
