"""The fast memory path (fused query/key pass, grouped chunks, split views) against a plain chunk-by-chunk version.

The plain version below slices one chunk at a time and runs separate passes for reads and writes; it is
differentiable, so the outer gradients (what training uses) are compared too, not only the outputs.
"""

from __future__ import annotations

import pytest
import torch

from titans_adapter import NeuralMemory, TitansConfig
from titans_adapter.memory import mlp_forward, mlp_weight_grads


def make_memory(**overrides) -> NeuralMemory:
    values = dict(layers=[0], window=64, chunk_size=8, num_heads=2, head_dim=16, theta_max=0.5, theta_bias_init=0.0)
    values.update(overrides)
    torch.manual_seed(0)
    return NeuralMemory(32, TitansConfig(**values))


def plain_memory(memory: NeuralMemory, x: torch.Tensor, token_mask: torch.Tensor | None = None):
    """DESIGN.md §4 chunk by chunk: read the chunk at the read weights, then write it. Returns (B, H, T, d), weights."""
    cfg = memory.config
    q, k, v, theta, gate_logits = memory.project(x)
    if token_mask is not None:
        theta = theta * token_mask[:, None, :]
    B, T = x.shape[:2]
    weights = [w.unsqueeze(0).expand(B, *w.shape) for w in memory.initial_weights]
    read_weights, momentum = weights, [torch.zeros_like(w) for w in weights]
    outputs, c = [], cfg.chunk_size
    for j, start in enumerate(range(0, T, c)):
        sl = slice(start, start + c)
        outputs.append(mlp_forward(read_weights, q[:, :, sl])[0])
        if start + c > T:
            break
        out, pre_acts, inputs = mlp_forward(read_weights, k[:, :, sl])
        grads = mlp_weight_grads(read_weights, pre_acts, inputs, 2 * (out - v[:, :, sl]) * theta[:, :, sl, None])
        norm = torch.sqrt(sum(g.pow(2).sum(dim=(-1, -2)) for g in grads) + 1e-12)
        scale = (cfg.max_update_norm / norm).clamp(max=1.0)[..., None, None]
        mean = gate_logits[:, :, sl].mean(dim=2)
        eta = torch.sigmoid(mean[..., 0])[..., None, None] if cfg.use_momentum else 0.0
        alpha = torch.sigmoid(mean[..., 1])[..., None, None] if cfg.use_forget else 0.0
        momentum = [eta * s - g * scale for s, g in zip(momentum, grads)]
        if cfg.forget_toward_init:
            weights = [w0 + (1 - alpha) * (w - w0) + s for w, s, w0 in zip(weights, momentum, memory.initial_weights)]
        else:
            weights = [(1 - alpha) * w + s for w, s in zip(weights, momentum)]
        if (j + 1) % cfg.refresh_every == 0:
            read_weights = weights
    return torch.cat(outputs, dim=2), weights


def outer_grads(memory: NeuralMemory, x: torch.Tensor, loss: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, [x, *memory.parameters()], allow_unused=False))


@pytest.mark.parametrize(
    ("depth", "refresh_every", "toward_init"),
    [(1, 1, False), (2, 1, False), (3, 1, False), (2, 3, False), (3, 2, False), (2, 1, True), (2, 3, True)],
)
def test_fast_path_matches_plain_outputs_and_outer_gradients(depth, refresh_every, toward_init):
    memory = make_memory(
        memory_depth=depth,
        refresh_every=refresh_every,
        max_update_norm=0.05,
        forget_toward_init=toward_init,
        forget_bias_init=-1.0,
    )
    torch.manual_seed(1)
    x = torch.randn(2, 8 * 9 + 5, 32, requires_grad=True)
    target = torch.randn(2, x.shape[1], 32)
    fast, state = memory(x, memory.initial_state(2))
    plain, weights = plain_memory(memory, x)
    plain = plain.transpose(1, 2).reshape_as(fast)
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)
    for a, b in zip(state.weights, weights):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # The outer backward: through reads and through the written weights.
    fast_loss = (fast * target).sum() + sum((w * w).sum() for w in state.weights)
    plain_loss = (plain * target).sum() + sum((w * w).sum() for w in weights)
    for a, b in zip(outer_grads(memory, x, fast_loss), outer_grads(memory, x, plain_loss)):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("refresh_every", [1, 3])
def test_pieces_with_pending_tokens_match_plain_gradients(refresh_every):
    """Calls that start mid-chunk (pending tokens re-joined to the stream) give the same outer gradients."""
    memory = make_memory(refresh_every=refresh_every)
    torch.manual_seed(2)
    x = torch.randn(1, 61, 32, requires_grad=True)
    state, parts = memory.initial_state(1), []
    for a, b in [(0, 3), (3, 13), (13, 14), (14, 40), (40, 61)]:
        out, state = memory(x[:, a:b], state)
        parts.append(out)
    fast = torch.cat(parts, dim=1)
    plain, _ = plain_memory(memory, x)
    plain = plain.transpose(1, 2).reshape_as(fast)
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)
    for a, b in zip(outer_grads(memory, x, fast.square().sum()), outer_grads(memory, x, plain.square().sum())):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


def test_token_mask_and_switched_off_gates_match_plain():
    memory = make_memory(use_momentum=False, use_forget=False)
    torch.manual_seed(3)
    x = torch.randn(2, 40, 32)
    mask = torch.ones(2, 40)
    mask[1, 30:] = 0  # padding at the end of the second stream
    with torch.no_grad():
        fast, state = memory(x, memory.initial_state(2), token_mask=mask)
        plain, weights = plain_memory(memory, x, token_mask=mask)
    torch.testing.assert_close(fast, plain.transpose(1, 2).reshape_as(fast), rtol=1e-4, atol=1e-5)
    for a, b in zip(state.weights, weights):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_call_shorter_than_a_chunk_only_reads():
    memory = make_memory()
    x = torch.randn(1, 5, 32)
    with torch.no_grad():
        out, state = memory(x, memory.initial_state(1))
        expected = mlp_forward(memory.initial_state(1).weights, memory.project(x)[0])[0]
    torch.testing.assert_close(out, expected.transpose(1, 2).reshape_as(out))
    assert state.chunks_written == 0 and state.pending_keys.shape[2] == 5


def test_l2_normalize_matches_f_normalize_with_gradients():
    from titans_adapter.memory import l2_normalize

    torch.manual_seed(0)
    x = torch.randn(3, 5, 7, dtype=torch.float64)
    x[0, 0] *= 1e-14  # a vector shorter than eps: its norm is clamped
    grad = torch.randn_like(x)
    ours, ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    (l2_normalize(ours) * grad).sum().backward()
    (torch.nn.functional.normalize(ref, dim=-1) * grad).sum().backward()
    torch.testing.assert_close(l2_normalize(x), torch.nn.functional.normalize(x, dim=-1))
    torch.testing.assert_close(ours.grad, ref.grad)
    assert torch.autograd.gradcheck(l2_normalize, (torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True),))


def test_branch_with_folded_scales_matches_the_plain_composition():
    """The branch folds its norm weight into the projections and its gate into the output projection."""
    from titans_adapter.retrofit import MemoryBranch

    torch.manual_seed(0)
    branch = MemoryBranch(32, TitansConfig(layers=[0], window=64, chunk_size=8, num_heads=2, head_dim=16))
    with torch.no_grad():
        branch.gate.normal_()
        branch.norm.weight.uniform_(0.5, 1.5)
    hidden = torch.randn(2, 20, 32)
    out, _ = branch(hidden, branch.memory.initial_state(2))
    retrieved, _ = branch.memory(branch.norm(hidden), branch.memory.initial_state(2))
    retrieved = torch.nn.functional.normalize(retrieved.unflatten(-1, (2, 16)), dim=-1).flatten(-2)
    torch.testing.assert_close(out, hidden + branch.gate * branch.out_proj(retrieved), rtol=1e-5, atol=1e-5)
