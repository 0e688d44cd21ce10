"""Evaluation: the baselines compute what they claim, scoring and aggregation, report and an end-to-end run."""

from __future__ import annotations

import json
import math
import runpy
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import open_gates, tiny_config, tiny_llama
from test_tasks import byte_tokenizer

from titans_adapter import retrofit
from titans_adapter.baselines import FullAttention, Retrofit, StreamingLLM, WindowedBase
from titans_adapter.evaluation import (
    QUICK,
    RunOptions,
    Suite,
    evaluate,
    gap_closed,
    make_examples,
    run_perplexity,
    run_qa,
    stop_token_ids,
    windows_back,
)
from titans_adapter.report import render_report
from titans_adapter.tasks import BABI_TASKS, NEEDLE_TASKS, Example, oracle_answer

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 257


@pytest.fixture
def tok():
    return byte_tokenizer()


@pytest.fixture
def base():
    return tiny_llama(vocab=VOCAB)


def ce(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits[0, :-1].float(), ids[1:], reduction="none")


def test_gap_closed_on_hand_made_numbers():
    assert gap_closed(30.0, 27.0, 20.0) == pytest.approx(0.3)
    assert gap_closed(30.0, 20.0, 20.0) == pytest.approx(1.0)
    assert gap_closed(30.0, 30.0, 20.0) == pytest.approx(0.0)
    assert gap_closed(30.0, 33.0, 20.0) == pytest.approx(-0.3)  # worse than the floor
    assert gap_closed(20.0, 19.0, 20.0) is None  # no gap to close
    assert gap_closed(45.99, 42.37, 45.98999) is None  # a gap within numerical noise (the first window)
    assert gap_closed(float("nan"), 1.0, 0.5) is None


def test_full_and_windowed_scores_are_the_base_on_the_right_spans(base):
    ids = torch.randint(0, VOCAB, (100,))
    with torch.no_grad():
        torch.testing.assert_close(FullAttention(base).token_nll(ids), ce(base(ids[None]).logits, ids), rtol=1e-4, atol=1e-5)
        windowed = WindowedBase(base, 32).token_nll(ids)
        for s in range(0, 99, 32):
            piece = base(ids[None, s : s + 32]).logits  # positions restart; the last one predicts the next window
            targets = ids[s + 1 : s + 33]
            torch.testing.assert_close(
                windowed[s : s + targets.shape[0]],
                F.cross_entropy(piece[0, : targets.shape[0]], targets, reduction="none"),
                rtol=1e-4,
                atol=1e-5,
            )


def test_retrofit_scores_equal_one_call_and_start_at_the_windowed_base(base):
    ids = torch.randint(0, VOCAB, (100,))
    model = retrofit(base, tiny_config(window=32))
    with torch.no_grad():
        torch.testing.assert_close(Retrofit(model).token_nll(ids), WindowedBase(base, 32).token_nll(ids), rtol=1e-4, atol=1e-5)
        open_gates(model)
        torch.testing.assert_close(Retrofit(model).token_nll(ids), ce(model(ids[None]).logits, ids), rtol=1e-4, atol=1e-5)


def test_streaming_blocks_see_sinks_and_recent_tokens(base):
    ids = torch.randint(0, VOCAB, (100,))
    system = StreamingLLM(base, window=32, sinks=4)  # blocks of 16, recent 12
    nll = system.token_nll(ids)
    with torch.no_grad():
        full = FullAttention(base).token_nll(ids)
        torch.testing.assert_close(nll[:16], full[:16], rtol=1e-4, atol=1e-5)  # first block: the plain prefix
        piece = torch.cat([ids[:4], ids[36:48], ids[48:64]])  # block at 48: sinks + 12 recent + the block
        expected = F.cross_entropy(base(piece[None]).logits[0, 16:32], ids[49:65], reduction="none")
    torch.testing.assert_close(nll[48:64], expected, rtol=1e-4, atol=1e-5)


def test_greedy_answers_follow_each_systems_attention_pattern(base):
    context, question = torch.randint(0, VOCAB, (50,)), torch.randint(0, VOCAB, (9,))  # 59 tokens: generation crosses 64
    ids = torch.cat([context, question])
    stops: set[int] = set()
    with torch.no_grad():
        full = base.generate(ids[None], max_new_tokens=8, do_sample=False, min_new_tokens=8)[0, ids.shape[0] :].tolist()
        assert FullAttention(base).greedy(context, question, 8, stops) == full
        model = retrofit(base, tiny_config(window=32))  # zero gates: exactly the windowed base, window for window
        assert WindowedBase(base, 32).greedy(context, question, 8, stops) == Retrofit(model).greedy(context, question, 8, stops)
        kept = torch.cat([ids[:4], ids[-(32 - 8 - 4) :]])
        streaming = StreamingLLM(base, 32, 4).greedy(context, question, 8, stops)
        assert (
            streaming
            == base.generate(kept[None], max_new_tokens=8, do_sample=False, min_new_tokens=8)[0, kept.shape[0] :].tolist()
        )
        open_gates(model)
        out, tokens = model(ids[None]), []
        for _ in range(8):
            tokens.append(int(out.logits[0, -1].argmax()))
            out = model(torch.tensor([[tokens[-1]]]), memory_state=out.memory_state)
        assert Retrofit(model).greedy(context, question, 8, stops) == tokens


class Oracle:
    """A 'system' that reads the whole input text and answers with the oracle."""

    name = "oracle"

    def __init__(self, tokenizer, constant: str | None = None) -> None:
        self.tokenizer, self.constant = tokenizer, constant

    def supports(self, n_tokens: int) -> bool:
        return True

    def greedy(self, context_ids, question_ids, max_new_tokens, stop_ids):
        context, question = self.tokenizer.decode(context_ids), self.tokenizer.decode(question_ids)
        task = "passkey" if "pass key" in question else "niah_number" if "special magic" in question else "qa1"
        answer = self.constant or oracle_answer(Example(task, "", context, question, "", 0, None))
        return self.tokenizer(" " + answer + "\n").input_ids


def test_scoring_pipeline_oracle_100_constant_0(tok):
    from titans_adapter.data import load_essays

    docs = dict(list(load_essays().items())[:4])
    examples = make_examples(tok, docs, NEEDLE_TASKS + BABI_TASKS, (800, 1600), (0.2, 0.8), 1, seed=3)
    again = make_examples(tok, docs, NEEDLE_TASKS + BABI_TASKS, (800, 1600), (0.2, 0.8), 1, seed=3)
    assert [e.to_dict() for e in examples] == [e.to_dict() for e in again]
    stops = stop_token_ids(tok)
    assert tok("\n").input_ids[0] in stops and tok.eos_token_id in stops
    records = run_qa([Oracle(tok)], examples, tok, stops, log=lambda s: None)
    assert len(records) == len(examples) and all(r["correct"] for r in records)
    records = run_qa([Oracle(tok, constant="nothing")], examples, tok, stops, log=lambda s: None)
    assert not any(r["correct"] for r in records)


class FixedNll:
    """A fake system whose per-token NLL is known: window w's positions all have NLL log(10 + w)."""

    name = "fixed"

    def __init__(self, window: int) -> None:
        self.window = window

    def supports(self, n_tokens: int) -> bool:
        return True

    def token_nll(self, ids):
        pos = torch.arange(ids.shape[0] - 1)
        return torch.log(10.0 + pos // self.window)


def test_perplexity_aggregates_by_window_and_position():
    docs = [("a", torch.zeros(65, dtype=torch.long)), ("b", torch.zeros(65, dtype=torch.long))]
    result = run_perplexity([FixedNll(16)], docs, 16, torch.device("cpu"), log=lambda s: None)
    assert [p for p, _ in result["by_window"]["fixed"]] == pytest.approx([10, 11, 12, 13], rel=1e-5)
    assert [c for _, c in result["by_window"]["fixed"]] == [32, 32, 32, 32]
    assert result["after_first_window"]["fixed"] == pytest.approx(math.exp((math.log(11) + math.log(12) + math.log(13)) / 3))
    assert len(result["by_position"]["ppl"]["fixed"]) == 8
    assert result["cost"][0]["system"] == "fixed" and result["cost"][0]["length"] == 65


TINY_SUITE = Suite("tiny", 200, 1, ("passkey", "niah_uuid"), (400,), (0.5,), ("qa1", "qa5"), (450,), 1, (100, 300))


def test_end_to_end_tiny_run_writes_results_report_and_plots(base, tok, tmp_path):
    from titans_adapter.data import load_essays

    corpus = tmp_path / "corpus.txt"  # --corpus: any long text file is the perplexity corpus and the haystack
    corpus.write_text(" ".join(list(load_essays().values())[:2]))
    model = retrofit(base, tiny_config(window=32))
    open_gates(model)
    options = RunOptions(seed=5, corpus=str(corpus))
    results = evaluate(base, tok, model, options, tmp_path, suite=TINY_SUITE, log=lambda s: None)
    report = render_report(results, tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["meta"]["systems"] == ["full attention", "base windowed", "streaming (sinks)", "retrofit"]
    assert len(saved["needle"]) == 2 * 4 and len(saved["babi"]) == 2 * 4  # every system on every example (all fit 512)
    assert {r["length"] for r in saved["cost"]} == {100, 200, 300}  # 200: the perplexity pass; 300: a longer document
    assert saved["perplexity"]["documents"] == ["corpus"]
    assert len((tmp_path / "examples.jsonl").read_text().splitlines()) == 2 + 2
    assert all(0 <= r["characters_right"] <= 1 for r in saved["needle"])
    assert all(r["characters_right"] == 1.0 for r in saved["needle"] if r["correct"])  # exact implies full credit
    text = report.read_text()
    assert "Partial credit" in text
    summary = text.split("## Summary")[1].split("##")[0]
    assert all(f"| {s} |" in summary for s in saved["meta"]["systems"])
    for png in [
        "ppl_by_window.png",
        "ppl_by_position.png",
        "niah_retrofit.png",
        "niah_full_attention.png",
        "babi_by_length.png",
        "cost.png",
    ]:
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        assert f"]({png})" in text


def test_script_runs_base_alone_and_with_adapter(base, tok, tmp_path, monkeypatch, capsys):
    """scripts/evaluate.py on a tiny local model directory, with --limit and overridden lengths."""
    base.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    model = retrofit(base, tiny_config(window=32))
    model.save_adapter(tmp_path / "adapter")
    model.unload()
    common = [
        "--model",
        str(tmp_path / "tiny"),
        "--lengths",
        "560",
        "--tasks",
        "passkey",
        "qa2",
        "--depths",
        "0.5",
        "--ppl-length",
        "100",
        "--limit",
        "1",
        "--device",
        "cpu",
    ]
    adapted = ["--adapter", str(tmp_path / "adapter"), "--no-cost", "--qa-systems", "windowed", "retrofit"]
    for extra, out in (([], "base"), (adapted, "adapted")):
        argv = ["evaluate.py", *common, *extra, "--window", "32", "--out", str(tmp_path / out)]
        if extra:
            argv = argv[:-4] + argv[-2:]  # with an adapter the window comes from it
        monkeypatch.setattr(sys, "argv", argv)
        runpy.run_path(str(ROOT / "scripts" / "evaluate.py"), run_name="__main__")
        results = json.loads((tmp_path / out / "results.json").read_text())
        assert ("retrofit" in results["meta"]["systems"]) == bool(extra)
        assert results["meta"]["window"] == 32 and (tmp_path / out / "report.md").is_file()
        records = results["needle"] + results["babi"]
        # full attention skips 560 tokens (over the tiny base's 512); --qa-systems leaves out streaming too
        assert sorted(r["task"] for r in records) == ["passkey", "passkey", "qa2", "qa2"]
        assert {r["system"] for r in records} == (
            {"base windowed", "retrofit"} if extra else {"base windowed", "streaming (sinks)"}
        )
        assert any(r["length"] == 560 for r in results["cost"]) != bool(extra)  # --no-cost: no rows at --lengths
    bad_arguments = (["--suite", "huge"], "invalid choice"), (["--tasks", "qa7"], "Unknown task(s) qa7")
    for bad, message in (*bad_arguments, (["--qa-systems", "oracle"], "invalid choice")):
        monkeypatch.setattr(sys, "argv", ["evaluate.py", *common, *bad])
        with pytest.raises(SystemExit):
            runpy.run_path(str(ROOT / "scripts" / "evaluate.py"), run_name="__main__")
        assert message in capsys.readouterr().err


def test_quick_suite_stays_small():
    """The quick suite is sized for a 2-core CPU: a few examples per cell, lengths up to 4096."""
    cells = len(QUICK.needle_tasks) * len(QUICK.needle_lengths) * len(QUICK.depths) + len(QUICK.babi_tasks) * len(
        QUICK.babi_lengths
    )
    assert cells * QUICK.examples_per_cell <= 40 and max(QUICK.needle_lengths) <= 4096


def test_windows_back_counts_windows_between_the_needle_and_the_question(tok):
    filler = "The grass is green. " * 60  # the test tokenizer reads bytes: 1,200 tokens
    needle = "The pass key is 12345. Remember it. 12345 is the pass key. "  # 59 tokens
    # At the very end the needle is in the question's window (1,259 tokens: window 19 of 64); at the start it
    # ends in window 0 (token 58), 19 windows of 64 back, or 78 - 3 = 75 windows of 16.
    end = Example("passkey", "u", filler + needle, "?", "12345", 0, 0.9, [needle], [len(filler)])
    start = Example("passkey", "u", needle + filler, "?", "12345", 0, 0.1, [needle], [0])
    assert windows_back(tok, end, 64) == 0 and windows_back(tok, start, 64) == 19 and windows_back(tok, start, 16) == 75
    # Moving the needle later never takes it further back.
    backs = []
    for cut in range(0, len(filler), 100):
        ex = Example("passkey", "u", filler[:cut] + needle + filler[cut:], "?", "12345", 0, 0.5, [needle], [cut])
        backs.append(windows_back(tok, ex, 64))
    assert backs == sorted(backs, reverse=True) and backs[0] == 19 and backs[-1] <= 1
    assert windows_back(tok, Example("qa1", "u", "story", "?", "x", 0, None), 64) is None
