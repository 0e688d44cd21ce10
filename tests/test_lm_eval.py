"""A retrofitted model under lm-evaluation-harness: local task files, loglikelihood and greedy generation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import open_gates, tiny_config, tiny_llama
from test_tasks import byte_tokenizer

from titans_adapter import retrofit

lm_eval = pytest.importorskip("lm_eval")
from lm_eval.tasks import TaskManager  # noqa: E402

from titans_adapter.lm_eval import TitansLM  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TASKS = ["titans_tiny_passkey_mc", "titans_tiny_passkey_gen"]


@pytest.fixture
def tiny_lm():
    tokenizer = byte_tokenizer()
    model = retrofit(tiny_llama(vocab=len(tokenizer)), tiny_config(window=32, chunk_size=8))
    open_gates(model)
    return TitansLM(model, tokenizer=tokenizer), model, tokenizer


def test_local_tasks_run_through_the_memory_path(tiny_lm, monkeypatch):
    lm, model, _ = tiny_lm
    monkeypatch.chdir(ROOT)  # the task files name their data relative to the repository root
    calls = []
    original = type(model).forward
    monkeypatch.setattr(type(model), "forward", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    results = lm_eval.simple_evaluate(model=lm, tasks=TASKS, task_manager=TaskManager(include_path=str(ROOT / "tests" / "data")))
    assert results is not None and set(TASKS) <= set(results["results"])
    assert 0.0 <= results["results"]["titans_tiny_passkey_mc"]["acc,none"] <= 1.0
    assert 0.0 <= results["results"]["titans_tiny_passkey_gen"]["exact_match,none"] <= 1.0
    assert len(calls) > 4  # every request went through the TitansModel, not the bare base


def test_loglikelihood_logits_are_the_titans_logits(tiny_lm):
    """Contexts longer than one window: lm-eval gets the memory-path logits, with nothing truncated."""
    lm, model, tokenizer = tiny_lm
    ids = torch.tensor([tokenizer("The pass key is 42. " * 6).input_ids])  # 120 tokens, 4 windows of 32
    with torch.no_grad():
        expected = model(ids).logits
        base_only = model.base(ids).logits
    torch.testing.assert_close(lm._model_call(ids), expected)
    assert (expected - base_only).abs().max() > 1e-4
    assert lm.max_length >= 2**20


def test_generation_matches_a_greedy_memory_decode_and_strips_left_padding(tiny_lm):
    lm, model, tokenizer = tiny_lm
    short = tokenizer("Hello there, the key is").input_ids
    long = tokenizer("The sky is blue. " * 3 + "Hello there, the key is").input_ids
    pad = tokenizer.pad_token_id
    context = torch.tensor([[pad] * (len(long) - len(short)) + short, long])
    mask = torch.tensor([[0] * (len(long) - len(short)) + [1] * len(short), [1] * len(long)])
    out = lm._model_generate(context, max_length=context.shape[1] + 5, stop=[], attention_mask=mask)
    assert out.shape[0] == 2 and torch.equal(out[:, : context.shape[1]], context)
    for row, ids in zip(out, (short, long)):
        expected, state, nxt = [], None, torch.tensor([ids])
        with torch.no_grad():
            for _ in range(5):
                res = model(nxt, memory_state=state)
                state, token = res.memory_state, int(res.logits[0, -1].argmax())
                expected.append(token)
                if token == tokenizer.eos_token_id:
                    break
                nxt = torch.tensor([[token]])
        assert row[context.shape[1] : context.shape[1] + len(expected)].tolist() == expected


def test_sampling_and_missing_adapter_fail_clearly(tiny_lm):
    lm, _, _ = tiny_lm
    with pytest.raises(ValueError, match="greedily"):
        lm._model_generate(torch.tensor([[1, 2]]), max_length=4, stop=[], do_sample=True)
    with pytest.raises(ValueError, match="adapter"):
        TitansLM("default")
