"""Task generators: facts land where they say, answers are recoverable from the text, seeds are stable."""

from __future__ import annotations

import json

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from titans_adapter.data import load_essays
from titans_adapter.tasks import (
    ALL_TASKS,
    BABI_TASKS,
    NEEDLE_HEADER,
    NEEDLE_TASKS,
    Haystack,
    TaskError,
    answer_budget,
    characters_right,
    constant_guesser,
    dump_jsonl,
    exact_match,
    make_example,
    oracle_answer,
    passkey_haystack,
)


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (256 byte tokens + <eos>), built in memory: no files, no hub."""
    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab["<eos>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>")


@pytest.fixture(scope="module")
def setup():
    tokenizer = byte_tokenizer()
    essays = list(load_essays().values())[:6]
    return tokenizer, {"essays": Haystack(essays, tokenizer), "passkey": passkey_haystack(tokenizer)}


def grid(setup, seed=0, lengths=(900, 3000), depths=(0.0, 0.5, 1.0)):
    tokenizer, haystacks = setup
    out = []
    for task in ALL_TASKS:
        for length in lengths:
            for depth in depths if task in NEEDLE_TASKS else [None]:
                out.append(make_example(task, tokenizer, haystacks, length, depth, seed, 0))
    return out


def test_facts_are_where_the_example_says(setup):
    tokenizer, _ = setup
    for ex in grid(setup):
        assert ex.facts and len(ex.facts) == len(ex.fact_offsets)
        for fact, offset in zip(ex.facts, ex.fact_offsets):
            assert ex.context[offset : offset + len(fact)] == fact
        if ex.depth is not None and ex.target_length >= 3000:  # the needle sits at its depth (to a sentence)
            start = len(NEEDLE_HEADER)  # relative position in the filler alone (the facts' own text removed)
            before = sum(len(f) + 1 for f, o in zip(ex.facts, ex.fact_offsets) if o < ex.fact_offsets[0])
            filler = len(ex.context) - start - sum(len(f) + 1 for f in ex.facts)
            relative = (ex.fact_offsets[0] - start - before) / filler
            assert abs(relative - ex.depth) < 0.1, (ex.uid, relative)
        elif ex.depth is None:  # bAbI facts keep their story order
            assert ex.fact_offsets == sorted(ex.fact_offsets)
        n = len(tokenizer(ex.prompt).input_ids) + answer_budget(tokenizer, ex.answer)  # what a model holds at the end
        assert 0.95 * ex.target_length <= n <= ex.target_length, (ex.uid, n)


def test_oracle_reading_everything_scores_100_and_constant_guesser_about_0(setup):
    examples = grid(setup) + grid(setup, seed=1, lengths=(1500,), depths=(0.3,))
    assert all(exact_match(oracle_answer(ex), ex.answer) for ex in examples)
    guess = constant_guesser("the")
    needles = [ex for ex in examples if ex.task in NEEDLE_TASKS]
    assert sum(exact_match(guess(ex), ex.answer) for ex in needles) == 0
    assert sum(exact_match(guess(ex), ex.answer) for ex in examples) == 0


def test_without_the_facts_the_oracle_cannot_answer(setup):
    """The answer comes from the inserted facts, not from the haystack or the question."""
    for ex in grid(setup, lengths=(900,), depths=(0.5,)):
        stripped = ex.context
        for fact in ex.facts:
            stripped = stripped.replace(fact, "")
        ex.context = stripped
        assert not exact_match(oracle_answer(ex), ex.answer), ex.uid


def test_multikey_has_distractor_needles_with_other_keys(setup):
    tokenizer, haystacks = setup
    ex = make_example("niah_multikey", tokenizer, haystacks, 2000, 0.5, 0, 0)
    assert len(ex.facts) == 4
    assert sum(ex.answer in f for f in ex.facts) == 1


def test_same_seed_same_examples_other_seed_other_examples(setup):
    a = [ex.to_dict() for ex in grid(setup, lengths=(900,), depths=(0.5,))]
    b = [ex.to_dict() for ex in grid(setup, lengths=(900,), depths=(0.5,))]
    c = [ex.to_dict() for ex in grid(setup, seed=7, lengths=(900,), depths=(0.5,))]
    assert a == b
    assert sum(x["answer"] != y["answer"] or x["context"] != y["context"] for x, y in zip(a, c)) >= len(a) - 2


def test_bad_requests_fail_clearly(setup):
    tokenizer, haystacks = setup
    with pytest.raises(TaskError, match="Unknown task 'qa9'"):
        make_example("qa9", tokenizer, haystacks, 1000, None, 0, 0)
    with pytest.raises(TaskError, match="too short"):
        make_example("niah_uuid", tokenizer, haystacks, 100, 0.5, 0, 0)
    with pytest.raises(TaskError, match="depth"):
        make_example("passkey", tokenizer, haystacks, 1000, 1.5, 0, 0)
    with pytest.raises(TaskError, match="no text"):
        Haystack(["", "  "], tokenizer)


@pytest.mark.parametrize(
    ("prediction", "answer", "expected"),
    [
        (" 71432. Remember", "71432", True),
        ("71432", "71432", True),
        (" 7143", "71432", False),
        (" 714321", "71432", False),
        ("\n71432", "71432", True),
        (" the kitchen", "kitchen", False),
        (" Kitchen.", "kitchen", True),
        (" 1b2c-3d", "1b2c-3d", True),
        ("", "x", False),
    ],
)
def test_exact_match(prediction, answer, expected):
    assert exact_match(prediction, answer) is expected


@pytest.mark.parametrize(
    ("prediction", "answer", "expected"),
    [
        (" 71432. Remember", "71432", 1.0),
        (" 71400", "71432", 0.6),
        (" 7", "71432", 0.2),
        (" 17432", "71432", 0.6),
        ("\n71432", "71432", 1.0),
        ("", "71432", 0.0),
        (" Kitchen.", "kitchen", 1.0),
        (" x", "", 0.0),
    ],
)
def test_characters_right_gives_partial_credit_in_place(prediction, answer, expected):
    assert characters_right(prediction, answer) == pytest.approx(expected)


def test_dump_jsonl_round_trip(setup, tmp_path):
    examples = grid(setup, lengths=(900,), depths=(0.5,))
    path = dump_jsonl(examples, tmp_path / "ex.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == [ex.to_dict() for ex in examples]
    assert {r["task"] for r in rows} == set(NEEDLE_TASKS) | set(BABI_TASKS)
