"""The neural memory alone: closed-form gradients, chunked semantics, streaming, memorization, stability."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from titans_adapter import NeuralMemory, TitansConfig
from titans_adapter.memory import mlp_forward, mlp_weight_grads


def make_memory(**overrides) -> NeuralMemory:
    values = dict(layers=[0], window=64, chunk_size=8, num_heads=2, head_dim=16, theta_max=0.5, theta_bias_init=0.0)
    values.update(overrides)
    torch.manual_seed(0)
    return NeuralMemory(32, TitansConfig(**values))


def reference_memory(memory: NeuralMemory, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Plain implementation of DESIGN.md §4 with autograd for the inner gradients, chunk by chunk."""
    cfg = memory.config
    q, k, v, theta, gate_logits = memory.project(x)
    if cfg.transition_keys:  # token t is written under token t-1's key; the first token writes nothing
        k = torch.cat([torch.zeros_like(k[:, :, :1]), k[:, :, :-1]], dim=2)
        theta = theta.clone()
        theta[:, :, 0] = 0
    if cfg.bigram_keys:  # token t's key also holds token t-1's context key; the first token has none
        context = memory.context_keys(x)
        k = F.normalize(k + torch.cat([torch.zeros_like(context[:, :, :1]), context[:, :, :-1]], dim=2), dim=-1)
    B = x.shape[0]
    weights = [w.unsqueeze(0).expand(B, *w.shape).clone() for w in memory.initial_weights]
    anchors = [w.detach().clone() if cfg.forget_toward_init else torch.zeros_like(w) for w in weights]
    read_weights = [w.clone() for w in weights]
    momentum = [torch.zeros_like(w) for w in weights]
    outputs = []
    T, c = x.shape[1], cfg.chunk_size
    for j, start in enumerate(range(0, T, c)):
        sl = slice(start, start + c)
        outputs.append(mlp_forward(read_weights, q[:, :, sl])[0])
        if start + c > T:
            break
        w_leaf = [w.detach().requires_grad_(True) for w in read_weights]
        out = mlp_forward(w_leaf, k[:, :, sl])[0]
        loss = ((out - v[:, :, sl]).pow(2).sum(-1) * theta[:, :, sl].detach()).sum()
        grads = torch.autograd.grad(loss, w_leaf)
        norm = torch.sqrt(sum(g.pow(2).sum(dim=(-1, -2)) for g in grads))
        scale = (cfg.max_update_norm / norm).clamp(max=1.0)[..., None, None]
        mean = gate_logits[:, :, sl].mean(dim=2)
        eta = torch.sigmoid(mean[..., 0])[..., None, None]
        alpha = torch.sigmoid(mean[..., 1])[..., None, None]
        momentum = [eta * s - g * scale for s, g in zip(momentum, grads)]
        weights = [a + (1 - alpha) * (w - a) + s for w, s, a in zip(weights, momentum, anchors)]
        if (j + 1) % cfg.refresh_every == 0:
            read_weights = weights
    return torch.cat(outputs, dim=2).detach(), [w.detach() for w in weights]


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_closed_form_gradients_match_autograd(depth):
    torch.manual_seed(0)
    dims = [8] + [16] * (depth - 1) + [8]
    weights = [torch.randn(3, a, b, requires_grad=True) for a, b in zip(dims[:-1], dims[1:])]
    keys, values, theta = torch.randn(3, 5, 8), torch.randn(3, 5, 8), torch.rand(3, 5)
    out, pre_acts, inputs = mlp_forward(weights, keys)
    loss = ((out - values).pow(2).sum(-1) * theta).sum()
    expected = torch.autograd.grad(loss, weights)
    closed = mlp_weight_grads(weights, pre_acts, inputs, 2 * (out - values) * theta.unsqueeze(-1))
    for a, b in zip(closed, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "refresh_every,keys,toward_init",
    [(1, None, False), (3, None, False), (1, "transition_keys", False), (1, "bigram_keys", False), (1, None, True)],
)
@pytest.mark.parametrize("depth", [2, 3])
def test_chunked_memory_matches_plain_reference(depth, refresh_every, keys, toward_init):
    memory = make_memory(
        memory_depth=depth,
        refresh_every=refresh_every,
        max_update_norm=0.05,
        **({keys: True} if keys else {}),
        forget_toward_init=toward_init,
        forget_bias_init=-1.0 if toward_init else -6.0,  # forget strongly enough that the anchor shows
    )
    x = torch.randn(2, 8 * 7 + 3, 32)
    with torch.no_grad():
        retrieved, state = memory(x, memory.initial_state(2))
    expected, weights = reference_memory(memory, x)
    B, T = x.shape[:2]
    torch.testing.assert_close(retrieved, expected.transpose(1, 2).reshape(B, T, -1), rtol=1e-4, atol=1e-5)
    for a, b in zip(state.weights, weights):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert state.pending_keys.shape[2] == 3  # the unfinished chunk waits in the state


@pytest.mark.parametrize(
    "overrides",
    [{}, {"refresh_every": 2}, {"transition_keys": True, "read_delta": True}, {"bigram_keys": True}],
)
def test_stream_in_pieces_equals_one_call(overrides):
    memory = make_memory(**overrides)
    x = torch.randn(2, 61, 32)
    with torch.no_grad():
        whole, whole_state = memory(x, memory.initial_state(2))
        state, parts = memory.initial_state(2), []
        for a, b in [(0, 3), (3, 5), (5, 21), (21, 40), (40, 61)]:
            out, state = memory(x[:, a:b], state)
            parts.append(out)
    torch.testing.assert_close(torch.cat(parts, dim=1), whole, rtol=1e-5, atol=1e-6)
    for a, b in zip(state.weights, whole_state.weights):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_transition_keys_skip_tokens_without_a_real_predecessor():
    k = torch.randn(2, 1, 4, 3)
    theta = torch.ones(2, 1, 4)
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])  # row 0 left-padded
    shifted, new_theta, last = NeuralMemory.shift_keys(k, theta, k[:, :, :0], mask)
    torch.testing.assert_close(shifted[:, :, 1:], k[:, :, :-1])
    assert shifted[:, :, 0].abs().max() == 0 and torch.equal(last, k[:, :, -1:])
    assert new_theta.tolist() == [[[0, 0, 0, 1]], [[0, 1, 1, 1]]]  # the stream's first token and the first after padding
    shifted, new_theta, _ = NeuralMemory.shift_keys(k, theta, last, None)  # a continued stream: its last key leads
    torch.testing.assert_close(shifted[:, :, 0], last[:, :, 0])
    assert new_theta.min() == 1


def test_bigram_keys_name_a_token_by_its_predecessor():
    k = F.normalize(torch.randn(2, 1, 4, 3), dim=-1)
    context = F.normalize(torch.randn(2, 1, 4, 3), dim=-1)
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])  # row 0 left-padded
    keys, last = NeuralMemory.add_previous_context(k, context, context[:, :, :0], mask)
    torch.testing.assert_close(keys[1, :, 1:], F.normalize(k[1, :, 1:] + context[1, :, :-1], dim=-1))
    torch.testing.assert_close(keys[0, :, 3], F.normalize(k[0, :, 3] + context[0, :, 2], dim=-1))
    for b, t in [(0, 0), (0, 2), (1, 0)]:  # the stream's first token and the first after padding keep their own key
        torch.testing.assert_close(keys[b, :, t], k[b, :, t])
    assert torch.equal(last, context[:, :, -1:])
    keys, _ = NeuralMemory.add_previous_context(k, context, last, None)  # a continued stream: its last context leads
    torch.testing.assert_close(keys[:, :, 0], F.normalize(k[:, :, 0] + last[:, :, 0], dim=-1))


def test_bigram_keys_start_from_the_query_projection_and_train():
    memory = make_memory(bigram_keys=True)
    heads_dim = memory.config.num_heads * memory.config.head_dim
    assert torch.equal(memory.to_context_key.weight, memory.to_qkv.weight[:heads_dim])
    x = torch.randn(1, 24, 32)
    out, _ = memory(x, memory.initial_state(1))
    out[:, 16:].sum().backward()  # chunk 2 reads what chunks 0-1 wrote under their bigram keys
    assert memory.to_context_key.weight.grad.abs().max() > 0


def test_short_calls_are_written_once_the_chunk_fills():
    memory = make_memory()
    state = memory.initial_state(1)
    with torch.no_grad():
        for _ in range(7):
            _, state = memory(torch.randn(1, 1, 32), state)
        assert state.chunks_written == 0 and state.pending_keys.shape[2] == 7
        _, state = memory(torch.randn(1, 1, 32), state)
    assert state.chunks_written == 1 and state.pending_keys.shape[2] == 0
    assert not torch.equal(state.weights[0], memory.initial_state(1).weights[0])


def test_reads_are_strictly_causal_across_chunks():
    memory = make_memory()
    x = torch.randn(1, 40, 32)
    x2 = x.clone()
    x2[:, 12] += 1.0  # inside chunk 1 (tokens 8..15)
    with torch.no_grad():
        a, _ = memory(x, memory.initial_state(1))
        b, _ = memory(x2, memory.initial_state(1))
    diff = (a - b).abs().amax(dim=(0, 2))
    assert diff[:12].max() == 0  # earlier tokens never see it
    assert diff[13:16].max() == 0  # later tokens of the same chunk read the chunk-start weights
    assert diff[16:].max() > 0  # the next chunks read what chunk 1 wrote


def test_memory_memorizes_written_pairs():
    """Writing random key -> value pairs makes retrieval on those keys far better than on unseen keys."""
    torch.manual_seed(0)
    memory = make_memory(num_heads=1, head_dim=32, memory_expansion=4, use_forget=False)
    state = memory.initial_state(1)
    keys = F.normalize(torch.randn(1, 1, 16, 32), dim=-1)
    values = F.normalize(torch.randn(1, 1, 16, 32), dim=-1)
    unseen = F.normalize(torch.randn(1, 1, 16, 32), dim=-1)
    theta = torch.full((1, 1, 2, 8), 0.1)
    logits = torch.full((1, 1, 2, 8, 2), -20.0)  # no momentum, no forgetting: plain gradient descent
    with torch.no_grad():
        for _ in range(200):
            state = memory.write_chunks(state, keys.view(1, 1, 2, 8, 32), values.view(1, 1, 2, 8, 32), theta, logits)
        seen_error = (memory.read(state.weights, keys) - values).pow(2).sum(-1).mean()
        unseen_error = (memory.read(state.weights, unseen) - values).pow(2).sum(-1).mean()
    assert seen_error < 0.05 * unseen_error, (seen_error, unseen_error)


@pytest.mark.parametrize("toward_init", [False, True])
def test_forgetting_decays_toward_zero_or_toward_the_initial_weights(toward_init):
    """With nothing written (theta 0) and a strong forget gate, the memory fades to zero, or stays at W_0."""
    memory = make_memory(forget_toward_init=toward_init, use_momentum=False)
    state = memory.initial_state(1)
    keys = F.normalize(torch.randn(1, 2, 1, 8, 16), dim=-1)
    logits = torch.full((1, 2, 1, 8, 2), 3.0)  # alpha = sigmoid(3) = 0.95 per chunk
    with torch.no_grad():
        for _ in range(20):
            state = memory.write_chunks(state, keys, keys, torch.zeros(1, 2, 1, 8), logits)
    for w, w0 in zip(state.weights, memory.initial_weights):
        if toward_init:
            torch.testing.assert_close(w[0], w0)
        else:
            assert w.norm() < 1e-6 * w0.norm()


def test_no_nan_over_a_million_tokens():
    """Aggressive learning rates over a 1M-token stream stay finite thanks to the update bound and forgetting."""
    memory = make_memory(chunk_size=64, window=64, theta_max=1.0, theta_bias_init=2.0)
    state = memory.initial_state(1)
    torch.manual_seed(0)
    largest = 0.0
    with torch.no_grad():
        for _ in range(1_000_000 // 8192):
            out, state = memory(torch.randn(1, 8192, 32) * 3, state)
            assert torch.isfinite(out).all()
            largest = max(largest, max(w.norm().item() for w in state.weights))
    assert all(torch.isfinite(w).all() for w in state.weights + state.momentum)
    print(f"largest memory weight norm over 1M tokens: {largest:.2f}")
    assert largest < 1e4


def test_memory_math_stays_fp32_under_bf16_input():
    memory = make_memory()
    x = torch.randn(1, 20, 32).bfloat16()
    out, state = memory(x.float(), memory.initial_state(1))
    assert out.dtype == torch.float32 and state.weights[0].dtype == torch.float32
