"""The retrofit on tiny random Llama models: identity at init, causality, streaming, frozen base."""

from __future__ import annotations

import pytest
import torch
from conftest import open_gates, tiny_config, tiny_llama

from titans_adapter import TitansConfig, retrofit


def test_identity_at_init_when_window_covers_input(tiny_base):
    ids = torch.randint(0, 128, (2, 30))
    expected = tiny_base(ids).logits
    model = retrofit(tiny_base, tiny_config(layers=[0, 1], window=32))
    out = model(ids, labels=ids)
    torch.testing.assert_close(out.logits, expected, rtol=0, atol=1e-5)
    base_loss = torch.nn.functional.cross_entropy(expected[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
    torch.testing.assert_close(out.loss, base_loss, rtol=1e-5, atol=1e-5)


def test_windows_restart_positions(tiny_base):
    """Each window is read like a fresh input of the base (at init, with no memory contribution)."""
    model = retrofit(tiny_base, tiny_config(window=16))
    ids = torch.randint(0, 128, (1, 48))
    logits = model(ids).logits
    for w in range(3):
        expected = tiny_base(ids[:, 16 * w : 16 * (w + 1)]).logits
        torch.testing.assert_close(logits[:, 16 * w : 16 * (w + 1)], expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"persistent_tokens": 3},
        {"overlap": 5},
        {"refresh_every": 2, "layers": [0, 1]},
        {"transition_keys": True, "read_delta": True},
        {"bigram_keys": True},
    ],
)
def test_causality_inside_and_across_windows(tiny_base, overrides):
    model = retrofit(tiny_base, tiny_config(**overrides))
    open_gates(model)
    ids = torch.randint(0, 128, (1, 100))
    changed = ids.clone()
    t = 20  # inside window 0
    changed[:, t] = (changed[:, t] + 1) % 128
    with torch.no_grad():
        diff = (model(ids).logits - model(changed).logits).abs().amax(dim=(0, 2))
    assert diff[:t].max() == 0
    assert diff[t:32].max() > 0  # attention inside the window
    assert diff[64:].max() > 0  # two windows later: only the memory carries it


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"persistent_tokens": 2, "overlap": 4},
        {"refresh_every": 3, "layers": [0, 1]},
        {"transition_keys": True, "read_delta": True},
        {"bigram_keys": True},
    ],
)
def test_streaming_in_pieces_equals_one_call(tiny_base, overrides):
    model = retrofit(tiny_base, tiny_config(**overrides))
    open_gates(model)
    ids = torch.randint(0, 128, (2, 150))
    with torch.no_grad():
        whole = model(ids)
        state, parts = None, []
        for a, b in [(0, 1), (1, 7), (7, 32), (32, 33), (33, 90), (90, 150)]:
            out = model(ids[:, a:b], memory_state=state)
            state, parts = out.memory_state, parts + [out.logits]
    torch.testing.assert_close(torch.cat(parts, dim=1), whole.logits, rtol=1e-4, atol=1e-5)
    assert state.tokens_seen == 150


def test_memory_carries_information_between_windows(tiny_model):
    """Without memory the third window would not depend on the first; with it, it does."""
    ids = torch.randint(0, 128, (1, 96))
    other = ids.clone()
    other[:, :32] = torch.randint(0, 128, (1, 32))
    with torch.no_grad():
        a = tiny_model(ids).logits[:, 64:]
        b = tiny_model(other).logits[:, 64:]
    assert (a - b).abs().max() > 1e-4


def test_only_adapter_parameters_train_and_base_stays_bit_identical(tiny_model):
    base_before = {n: p.clone() for n, p in tiny_model.base.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in tiny_model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    ids = torch.randint(0, 128, (2, 80))
    tiny_model(ids, labels=ids).loss.backward()
    assert all(p.grad is None for p in tiny_model.base.parameters())
    adapter = tiny_model.adapter_parameters()
    assert all(p.requires_grad for p in adapter.values())
    with_grad = [n for n, p in adapter.items() if p.grad is not None and p.grad.abs().sum() > 0]
    assert any("to_qkv" in n for n in with_grad) and any(n.endswith("gate") for n in with_grad)
    optimizer.step()
    for n, p in tiny_model.base.named_parameters():
        assert torch.equal(p, base_before[n]), n
    counts = tiny_model.parameter_counts()
    assert counts["trainable"] == sum(p.numel() for p in adapter.values()) < counts["base"]


def test_outer_loss_backpropagates_through_memory_writes(tiny_base):
    """A loss on window 1 reaches the key/value projections through what window 0 wrote; truncation cuts it."""

    def qkv_grad(truncate: int) -> torch.Tensor:
        model = retrofit(tiny_llama(), tiny_config(truncate_bptt=truncate))
        open_gates(model)
        ids = torch.randint(0, 128, (1, 64), generator=torch.Generator().manual_seed(0))
        labels = ids.clone()
        labels[:, :40] = -100  # loss only inside window 1 (tokens 32..63), past its first chunk
        model(ids, labels=labels).loss.backward()
        return model.memories["0"].memory.to_qkv.weight.grad.clone()

    full, truncated = qkv_grad(0), qkv_grad(1)
    assert full.abs().sum() > 0 and truncated.abs().sum() > 0
    assert not torch.allclose(full, truncated)


def test_gates_are_reported(tiny_model):
    names = tiny_model.gate_parameter_names()
    assert any(n.endswith(".gate") for n in names) and any("to_gates" in n for n in names)


def test_unload_restores_the_plain_base(tiny_base):
    ids = torch.randint(0, 128, (1, 20))
    expected = tiny_base(ids).logits
    model = retrofit(tiny_base, tiny_config())
    open_gates(model)
    base = model.unload()
    torch.testing.assert_close(base(ids).logits, expected, rtol=0, atol=0)
    retrofit(base, tiny_config())  # can be retrofitted again


def test_bf16_base_keeps_memory_in_fp32():
    base = tiny_llama().to(torch.bfloat16)
    model = retrofit(base, tiny_config())
    open_gates(model)
    out = model(torch.randint(0, 128, (1, 70)))
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.logits.float()).all()
    assert out.memory_state.layers[0].weights[0].dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.adapter_parameters().values())


def test_default_config_keeps_identity():
    config = TitansConfig()
    assert config.persistent_tokens == 0 and config.overlap == 0


def test_reading_without_logits_skips_upper_layers_but_writes_the_same_memory(tiny_base):
    model = retrofit(tiny_base, tiny_config(layers=[0]))
    open_gates(model)
    ids = torch.randint(0, 128, (1, 100))
    labels = torch.full_like(ids, -100)
    labels[:, 70:] = ids[:, 70:]  # loss only in the last windows
    calls = []
    handle = tiny_base.model.layers[1].register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        full = model(ids, labels=labels)
        n_full = len(calls)
        lean = model(ids, labels=labels, return_logits=False)
    handle.remove()
    assert lean.logits is None and len(calls) - n_full < n_full  # layer 1 skipped for label-free windows
    torch.testing.assert_close(lean.loss, full.loss, rtol=1e-6, atol=1e-6)
    for a, b in zip(lean.memory_state.layers[0].weights, full.memory_state.layers[0].weights):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # continuing after a lean read gives the same logits as continuing after a full one
    more = torch.randint(0, 128, (1, 20))
    with torch.no_grad():
        a = model(more, memory_state=lean.memory_state).logits
        b = model(more, memory_state=full.memory_state).logits
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("overrides", [{}, {"persistent_tokens": 2}])
def test_sparse_labels_compute_logits_only_where_needed_with_the_same_loss(tiny_base, overrides):
    model = retrofit(tiny_base, tiny_config(layers=[0], **overrides))
    open_gates(model)
    ids = torch.randint(0, 128, (3, 100))
    labels = torch.full_like(ids, -100)
    labels[0, 95:] = ids[0, 95:]  # answers at the end, at different positions per row
    labels[2, 41:44] = ids[2, 41:44]
    shapes = []
    handle = tiny_base.lm_head.register_forward_hook(lambda module, args, out: shapes.append(out.shape[1]))
    with torch.no_grad():
        full = model(ids, labels=labels)
        n_full = len(shapes)
        lean = model(ids, labels=labels, return_logits=False)
    handle.remove()
    assert max(shapes[n_full:]) <= 5  # the LM head saw only the labelled positions
    torch.testing.assert_close(lean.loss, full.loss, rtol=1e-5, atol=1e-6)


def test_a_state_can_be_continued_twice(tiny_model):
    """Two continuations of one state (e.g. two questions about one document) do not disturb each other."""
    ids = torch.randint(0, 128, (1, 45))  # ends inside a window: the state holds a KV cache
    first, second = torch.randint(0, 128, (1, 6)), torch.randint(0, 128, (1, 9))
    with torch.no_grad():
        state = tiny_model(ids).memory_state
        a = tiny_model(first, memory_state=state)
        b = tiny_model(second, memory_state=state)
        a_again = tiny_model(first, memory_state=state).logits
        a_more = tiny_model(second, memory_state=a.memory_state).logits
        expected_b = tiny_model(torch.cat([ids, second], dim=1)).logits[:, 45:]
        expected_a_more = tiny_model(torch.cat([ids, first, second], dim=1)).logits[:, 51:]
    torch.testing.assert_close(b.logits, expected_b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a_again, a.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a_more, expected_a_more, rtol=1e-5, atol=1e-5)


def test_branch_output_stays_bounded_when_memory_weights_blow_up(tiny_model):
    """A memory whose weights drifted far (a long stream) cannot push the residual stream arbitrarily far."""
    branch = tiny_model.memories["0"]
    hidden = torch.randn(1, 16, 64)
    state = branch.memory.initial_state(1)
    huge = state.map(lambda t: t * 1e4)
    with torch.no_grad():
        out, _ = branch(hidden, huge)
    bound = (
        branch.gate.abs().max() * torch.linalg.matrix_norm(branch.out_proj.weight, ord=2) * branch.memory.config.num_heads**0.5
    )
    assert torch.isfinite(out).all()
    assert (out - hidden).norm(dim=-1).max() <= bound * 1.001


@pytest.mark.parametrize("overlap", [0, 8])
def test_cached_branch_inputs_continue_a_stream_exactly(tiny_base, overlap):
    """head, then gap windows written from their cached branch inputs, then tail: the same logits and the same
    gradients as reading head + gap + tail token by token (the memory at layer 1, so frozen layer 0 runs below it).
    With an overlap, the gap's windows are read after the tokens before them and the tail re-reads the gap's end."""
    model = retrofit(tiny_base, tiny_config(layers=[1], overlap=overlap))
    open_gates(model)
    torch.manual_seed(3)
    head, gap, tail = (torch.randint(0, 128, (2, n)) for n in (32, 96, 20))
    full = model(torch.cat([head, gap, tail], 1))
    state = model(head, return_logits=False).memory_state
    cached = model.branch_inputs(gap, previous_ids=state.recent_ids)
    assert cached.shape == (2, 96, 64) and not cached.requires_grad
    state = model.write_branch_inputs(cached, state, last_ids=gap if overlap else None)
    assert state.tokens_seen == 128 and state.cache is None
    out = model(tail, memory_state=state)
    torch.testing.assert_close(out.logits, full.logits[:, -20:], atol=1e-5, rtol=1e-5)
    params = model.adapter_parameters()
    expected = torch.autograd.grad(full.logits[:, -20:].square().mean(), list(params.values()))
    got = torch.autograd.grad(out.logits.square().mean(), list(params.values()))
    for name, a, b in zip(params, got, expected):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)


def test_cached_branch_inputs_refuse_what_they_cannot_reproduce(tiny_base):
    model = retrofit(tiny_base, tiny_config(layers=[0, 1]))
    with pytest.raises(ValueError, match="exactly one memory layer"):
        model.branch_inputs(torch.zeros(1, 32, dtype=torch.long))
    model.unload()
    model = retrofit(tiny_base, tiny_config(layers=[1]))
    with pytest.raises(ValueError, match="whole windows"):
        model.branch_inputs(torch.zeros(1, 40, dtype=torch.long))
    hidden = model.branch_inputs(torch.zeros(1, 32, dtype=torch.long))
    mid_window = model(torch.zeros(1, 5, dtype=torch.long), return_logits=False).memory_state
    with pytest.raises(ValueError, match="window boundary"):
        model.write_branch_inputs(hidden, mid_window)
    with pytest.raises(ValueError, match="batch 2"):
        model.write_branch_inputs(hidden, model.init_memory_state(2))
    model.unload()
    model = retrofit(tiny_base, tiny_config(layers=[1], overlap=8))
    with pytest.raises(ValueError, match="previous_ids must be"):
        model.branch_inputs(torch.zeros(1, 32, dtype=torch.long), previous_ids=torch.zeros(1, 4, dtype=torch.long))
    hidden = model.branch_inputs(torch.zeros(1, 32, dtype=torch.long))
    with pytest.raises(ValueError, match="needs last_ids"):
        model.write_branch_inputs(hidden, model.init_memory_state(1))


def test_compiled_memory_gives_the_eager_loss_and_gradients():
    """compile_memory traces the whole branch into one graph (fullgraph): same loss and adapter gradients.
    A backend that runs the traced graph as is checks the tracing quickly; inductor and CUDA graphs are measured by scripts/bench.py."""

    graphs = []

    def counting_backend(graph_module, example_inputs):  # runs the traced graph as is, and counts it
        graphs.append(graph_module)
        return graph_module.forward

    def loss_and_grads(compiled: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        torch.manual_seed(0)
        model = retrofit(tiny_llama(), tiny_config(bigram_keys=True))
        open_gates(model)
        if compiled:
            torch._dynamo.reset()
            assert model.compile_memory(backend=counting_backend) is model
        ids = torch.randint(0, 128, (2, 96), generator=torch.Generator().manual_seed(1))
        loss = model(ids, labels=ids).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.adapter_parameters().items()}

    (eager_loss, eager_grads), (compiled_loss, compiled_grads) = loss_and_grads(False), loss_and_grads(True)
    assert graphs, "compile_memory compiled nothing"
    assert torch.allclose(eager_loss, compiled_loss)
    assert eager_grads.keys() == compiled_grads.keys()
    for name, grad in eager_grads.items():
        assert torch.allclose(grad, compiled_grads[name], atol=1e-6), name


def test_reset_memory_keeps_the_place_and_overlap_but_not_the_past(tiny_base):
    model = retrofit(tiny_base, tiny_config(overlap=8))
    open_gates(model)
    ids = torch.randint(0, 128, (2, 96), generator=torch.Generator().manual_seed(2))
    state = model(ids[:, :64], return_logits=False).memory_state
    reset = model.reset_memory(state)
    assert reset.tokens_seen == 64 and torch.equal(reset.recent_ids, ids[:, 56:64])
    fresh = model.init_memory_state(2).layers[0]
    assert all(torch.equal(a, b) for a, b in zip(reset.layers[0].weights, fresh.weights))
    # The next window reads its overlap either way; only the memory differs.
    with_past = model(ids[:, 64:], memory_state=state).logits
    without_past = model(ids[:, 64:], memory_state=reset).logits
    cold = model(ids[:, 64:]).logits  # no overlap, no past
    assert not torch.allclose(with_past, without_past) and not torch.allclose(without_past, cold)
    with pytest.raises(ValueError, match="window boundary"):
        model.reset_memory(model(ids[:, :5], return_logits=False).memory_state)
