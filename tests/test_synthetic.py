"""Synthetic long-range samples put the fact and the question where they claim, deterministically."""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import pytest

from titans_adapter.data import DataError
from titans_adapter.synthetic import KEYED_WORDS, NUMBER_KINDS, NUMBER_SENTENCES, answer_tokens, make_fact, make_sample
from titans_adapter.tasks import KEY_WORDS


class CharTokenizer:
    """One token per character, decodable."""

    def __call__(self, text: str, add_special_tokens: bool = False):
        return SimpleNamespace(input_ids=[ord(c) for c in text])

    def decode(self, ids) -> str:
        return "".join(chr(int(i)) for i in ids)


FILLER = np.array([ord(c) for c in "lorem ipsum dolor sit amet " * 200])


@pytest.mark.parametrize("task", ["passkey", "kv", "name_attribute", "number", "named_number", "keyed_number"])
@pytest.mark.parametrize("fact_window, question_window", [(0, -1), (1, 3), (-1, 2)])
def test_fact_and_question_sit_where_they_claim(task, fact_window, question_window):
    tok, window, windows = CharTokenizer(), 128, 4
    for index in range(5):
        s = make_sample(
            FILLER, tok, window=window, windows=windows, tasks=[task], seed=3, index=index,
            fact_window=fact_window, question_window=question_window,
        )  # fmt: skip
        assert s.ids.shape == s.labels.shape == (window * windows,)
        fact_win = s.fact_span[0] // window
        q_win = question_window % windows
        assert (s.fact_span[1] - 1) // window == fact_win, "the fact lies inside one window"
        assert s.question_span[0] // window == q_win and (s.answer_span[1] - 1) // window == q_win
        assert fact_win < q_win if fact_window == -1 else fact_win == fact_window
        assert s.answer_span[1] == (q_win + 1) * window  # the answer ends its window
        fact_text = tok.decode(s.ids[slice(*s.fact_span)])
        answer = tok.decode(s.ids[slice(*s.answer_span)])
        assert answer == s.answer and s.answer in fact_text
        assert "?" in tok.decode(s.ids[slice(*s.question_span)])
        labelled = np.flatnonzero(s.labels != -100)
        assert labelled.tolist() == list(range(*s.answer_span))
        assert (s.labels[labelled] == s.ids[labelled]).all()


@pytest.mark.parametrize("last_window_tokens", [0, 64])
def test_answer_end_labels_a_period_after_the_answer(last_window_tokens):
    tok, window = CharTokenizer(), 128
    kwargs = dict(window=window, windows=3, tasks=["passkey"], seed=0, index=4, last_window_tokens=last_window_tokens)
    plain, ended = make_sample(FILLER, tok, **kwargs), make_sample(FILLER, tok, answer_end=True, **kwargs)
    a0, a1 = ended.answer_span
    assert ended.answer == plain.answer == tok.decode(ended.ids[a0:a1]) and a1 - a0 == 5
    assert a1 == len(ended.ids) - 1 and tok.decode(ended.ids[a1:]) == "."  # the period closes the sample
    assert np.flatnonzero(ended.labels != -100).tolist() == list(range(a0, a1 + 1))
    assert (
        ended.fact_span == plain.fact_span and (ended.ids[: ended.question_span[0]] == plain.ids[: ended.question_span[0]]).all()
    )


def test_question_formats_are_drawn_per_sample():
    tok = CharTokenizer()
    kwargs = dict(window=128, windows=3, tasks=["passkey", "number"], seed=5)
    questions = {
        layouts: [tok.decode(s.ids[slice(*s.question_span)]) for s in (make_sample(FILLER, tok, index=i, question_formats=layouts, **kwargs) for i in range(20))]
        for layouts in [("plain",), ("qa",), ("plain", "qa")]
    }  # fmt: skip
    assert all(q.startswith(" What is ") and "\n" not in q for q in questions[("plain",)])
    assert all(q.startswith("\nQuestion: What is ") and "?\nAnswer: " in q for q in questions[("qa",)])
    assert {q.startswith("\nQuestion:") for q in questions[("plain", "qa")]} == {True, False}
    number = make_sample(FILLER, tok, index=0, question_formats=("qa",), **{**kwargs, "tasks": ["number"]})
    assert (
        len(number.answer) == 7 and number.answer.isdigit() and number.answer in tok.decode(number.ids[slice(*number.fact_span)])
    )


def test_facts_across_windows_cross_a_boundary_but_never_reach_the_question_window():
    tok, window, windows = CharTokenizer(), 128, 4
    kwargs = dict(window=window, windows=windows, tasks=["passkey", "kv"], seed=2, fact_window=-1)
    crossing = 0
    for index in range(60):
        inside = make_sample(FILLER, tok, index=index, **kwargs)
        s = make_sample(FILLER, tok, index=index, fact_across_windows=True, **kwargs)
        start, end = s.fact_span
        assert s.fact_span[0] // window == inside.fact_span[0] // window, "the fact starts in the window it was given"
        assert end <= (windows - 1) * window and s.answer in tok.decode(s.ids[start:end])
        assert np.flatnonzero(s.labels != -100).tolist() == list(range(*s.answer_span))
        crossing += start // window != (end - 1) // window
    assert crossing >= 5, "some facts run into the next window"


def test_deterministic_from_seed_and_index():
    tok = CharTokenizer()
    kwargs = dict(window=128, windows=3, tasks=["passkey", "kv", "name_attribute"])
    a = make_sample(FILLER, tok, seed=1, index=7, **kwargs)
    b = make_sample(FILLER, tok, seed=1, index=7, **kwargs)
    c = make_sample(FILLER, tok, seed=2, index=7, **kwargs)
    assert (a.ids == b.ids).all() and a.answer == b.answer
    assert not (a.ids == c.ids).all()


@pytest.mark.parametrize("digits", [1, 2, 8])
def test_passkey_digits_sets_the_key_length_and_nothing_else(digits):
    tok, kwargs = CharTokenizer(), dict(window=128, windows=3, tasks=["passkey"], seed=0)
    for index in range(5):
        default, sized = (
            make_sample(FILLER, tok, index=index, **kwargs),
            make_sample(FILLER, tok, index=index, passkey_digits=digits, **kwargs),
        )
        assert len(default.answer) == 5 and len(sized.answer) == digits and sized.answer.isdigit()
        assert (sized.labels != -100).sum() == digits
        assert tok.decode(sized.ids[slice(*sized.fact_span)]).count(sized.answer) == 2  # stated twice, as ever


def test_leading_space_token_of_the_answer_is_not_scored():
    q, a = answer_tokens(CharTokenizer(), " The pass key is", " 12345")
    assert CharTokenizer().decode(a) == "12345" and CharTokenizer().decode(q).endswith("is ")


def test_window_too_small_for_the_fact():
    with pytest.raises(DataError, match="too small"):
        make_sample(FILLER, CharTokenizer(), window=16, windows=3, tasks=["passkey"], seed=0, index=0)


def test_short_last_window_puts_the_question_right_after_the_window_starts():
    tok, window = CharTokenizer(), 128
    s = make_sample(FILLER, tok, window=window, windows=3, tasks=["passkey"], seed=0, index=1, last_window_tokens=64)
    assert s.ids.shape == (2 * window + 64,)
    assert s.answer_span[1] == 2 * window + 64 and s.question_span[0] >= 2 * window  # all inside the cut window
    assert s.fact_span[1] <= window
    with pytest.raises(DataError, match="too few for a question"):
        make_sample(FILLER, tok, window=window, windows=3, tasks=["passkey"], seed=0, index=1, last_window_tokens=20)


def test_named_number_varies_its_sentence_and_length_and_asks_by_name():
    facts = [make_fact("named_number", random.Random(i)) for i in range(200)]
    assert {len(answer.strip()) for *_, answer in facts} == set(range(3, 9))
    sentences = set()
    for fact, question, prefix, answer in facts:
        name = prefix.removeprefix("The ").removesuffix(" is")
        assert question == f"What is the {name}?" and answer.strip().isdigit() and not answer.startswith(" 0")
        sentences.add(fact.replace(name, "{name}").replace(answer.strip(), "{number}"))
    assert sentences == set(NUMBER_SENTENCES)


def test_keyed_number_names_hold_digits_that_are_not_the_answer():
    facts = [make_fact("keyed_number", random.Random(i)) for i in range(200)]
    assert {len(answer.strip()) for *_, answer in facts} == set(range(3, 9))
    for fact, question, prefix, answer in facts:
        name = prefix.removeprefix("The ").removesuffix(" is")
        kind, word_and_digits = name.split(" for ")
        word, key_digits = word_and_digits.split("-")
        assert kind in NUMBER_KINDS and word in KEYED_WORDS and key_digits.isdigit() and 2 <= len(key_digits) <= 3
        assert question == f"What is the {name}?" and name in fact and f"{answer}." in fact
    assert not set(KEYED_WORDS) & set(KEY_WORDS), "the evaluation's keys stay unseen in training"
