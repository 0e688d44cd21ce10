"""Synthetic long-range samples: a fact early in the sample, its question in a later window, in essay text.

Natural text gives the memory a weak training signal; a fact that only the memory can carry (the
frozen attention sees one window at a time) gives a strong one. Every sample is a pure function of
(seed, index), so a resumed or multi-process run sees exactly the same samples.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from .data import DataError

FIRST_NAMES = ["Alice", "Bruno", "Chloe", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kira", "Liam"]
FIRST_NAMES += ["Maya", "Nils", "Olga", "Pablo", "Quinn", "Rosa", "Sami", "Tara"]
LAST_NAMES = ["Baker", "Costa", "Dunn", "Evans", "Fischer", "Garcia", "Hughes", "Ivanov", "Jensen", "Kowalski"]
LAST_NAMES += ["Larsen", "Moreau", "Novak", "Okafor", "Park", "Quist", "Rossi", "Silva", "Tanaka", "Weber"]
CITIES = ["Paris", "Tokyo", "Cairo", "Lima", "Oslo", "Dublin", "Madrid", "Boston", "Sydney", "Toronto", "Vienna"]
CITIES += ["Berlin", "Mumbai", "Denver", "Lisbon", "Prague", "Seoul", "Nairobi", "Chicago", "Athens"]
WORDS = ["apple", "river", "candle", "falcon", "marble", "pepper", "silver", "tiger", "violet", "walnut", "copper"]
WORDS += ["garden", "harbor", "island", "jacket", "lemon", "meadow", "orange", "pillow", "rocket", "saddle", "tunnel"]
# named_number: "<word> <kind>" names a number of 3-8 digits, stated in one of several sentences, so that what the
# memory learns to recall is a number after a matching name, not one sentence and one answer length.
NUMBER_KINDS = ["code", "number", "key", "value", "pin", "serial", "ticket", "account"]
NUMBER_SENTENCES = [
    " The {name} is {number}.",
    " Write down the {name}: {number}.",
    " Note that the {name} is {number}.",
    " For the record, the {name} is {number}. Keep it safe.",
    " The {name}, which you will need later, is {number}.",
]
# keyed_number: the same sentences for "<kind> for <word>-<2-3 digits>", a name that holds digits of its own (as
# record keys and serial names do), so that the memory learns not to take the name's digits for the number's. Its
# words are none of the needle evaluation's key words (tasks.KEY_WORDS), whose keys look the same ("saddle-364").
KEYED_WORDS = ["candle", "tiger", "walnut", "copper", "garden", "island", "jacket", "lemon", "meadow", "orange"]
KEYED_WORDS += ["pillow", "rocket", "tunnel", "silver"]


@dataclass
class SyntheticSample:
    """ids and labels (L,), labels -100 except on the answer (and the "." after it with answer_end); spans are
    [start, end) token positions, answer_span the answer alone."""

    ids: np.ndarray
    labels: np.ndarray
    task: str
    fact_span: tuple[int, int]
    question_span: tuple[int, int]
    answer_span: tuple[int, int]
    answer: str


QUESTION_FORMATS = {
    "plain": " {question} {prefix}",  # " What is the pass key? The pass key is"
    "qa": "\nQuestion: {question}\nAnswer: {prefix}",  # the layout of the needle evaluation and of many QA prompts
}


def make_fact(task: str, rng: random.Random, passkey_digits: int = 5) -> tuple[str, str, str, str]:
    """(fact sentence, question, answer prefix that ends right before the answer, answer) for one task; a passkey
    has passkey_digits digits."""
    if task == "passkey":
        key = "".join(rng.choice("0123456789") for _ in range(passkey_digits))
        return (
            f" The pass key is {key}. Remember it. {key} is the pass key.",
            "What is the pass key?",
            "The pass key is",
            f" {key}",
        )
    if task == "kv":
        key = "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(3)) + "-" + str(rng.randint(10, 99))
        value = rng.choice(WORDS)
        return (
            f" Note: the value of key {key} is {value}.",
            f"What is the value of key {key}?",
            f"The value of key {key} is",
            f" {value}",
        )
    if task == "name_attribute":
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        city = rng.choice(CITIES)
        return f" {name} lives in {city}.", f"Where does {name} live?", f"{name} lives in", f" {city}"
    if task == "number":
        name = rng.choice(FIRST_NAMES)
        number = str(rng.randrange(1_000_000, 10_000_000))
        return f" {name}'s number is {number}.", f"What is {name}'s number?", f"{name}'s number is", f" {number}"
    if task in ("named_number", "keyed_number"):
        if task == "named_number":
            name = f"{rng.choice(WORDS)} {rng.choice(NUMBER_KINDS)}"
        else:
            name = f"{rng.choice(NUMBER_KINDS)} for {rng.choice(KEYED_WORDS)}-{rng.randrange(10, 1000)}"
        digits = rng.randint(3, 8)
        number = str(rng.randrange(10 ** (digits - 1), 10**digits))
        fact = rng.choice(NUMBER_SENTENCES).format(name=name, number=number)
        return fact, f"What is the {name}?", f"The {name} is", f" {number}"
    raise DataError(f"Unknown synthetic task '{task}'.")


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False).input_ids)


def answer_tokens(tokenizer, question: str, answer: str) -> tuple[list[int], list[int]]:
    """Token ids of question and answer; a leading whitespace-only answer token moves to the question.

    (SmolLM2 writes " 48213" as ' ', '4', '8', ...: the space is free to guess and must not count.)
    """
    q_ids, a_ids = _encode(tokenizer, question), _encode(tokenizer, answer)
    while len(a_ids) > 1 and not tokenizer.decode(a_ids[:1]).strip():
        q_ids.append(a_ids.pop(0))
    return q_ids, a_ids


def cut_length(window: int, windows: int, last_window_tokens: int = 0) -> int:
    """Tokens in `windows` windows whose last one is cut to last_window_tokens (0 = not cut)."""
    return window * (windows - 1) + (last_window_tokens or window)


def make_sample(
    filler: np.ndarray,
    tokenizer,
    *,
    window: int,
    windows: int,
    tasks: list[str],
    seed: int,
    index: int,
    fact_window: int = 0,
    question_window: int = -1,
    last_window_tokens: int = 0,
    answer_end: bool = False,
    question_formats: tuple[str, ...] = ("plain",),
    fact_across_windows: bool = False,
    passkey_digits: int = 5,
) -> SyntheticSample:
    """Sample `index` of the stream `seed`: essay filler of windows * window tokens with a fact put at a
    random place inside `fact_window` and question + answer ending `question_window` (-1 = the last).
    fact_window -1 picks a random window before the question's. last_window_tokens > 0 cuts the last
    window to that many tokens (a question there then comes right after the window starts). answer_end puts a
    labelled "." after the answer: the token that tells a greedy reader the answer is over. question_formats
    lists the layouts of QUESTION_FORMATS that a sample's question is drawn from. fact_across_windows lets the fact
    start anywhere in its window and run on into the next one (never into the question's window), as a needle in a
    long text often does; by default every fact lies inside one window. passkey_digits sets the length of a
    passkey (a curriculum in key length changes it between stages).
    """
    if len(filler) == 0:
        raise DataError("No filler text for synthetic samples.")
    rng = random.Random(f"synthetic:{seed}:{index}")
    q_win = question_window % windows
    f_win = rng.randrange(q_win) if fact_window == -1 else fact_window
    if not 0 <= f_win < q_win:
        raise DataError(f"The fact window ({f_win}) must come before the question window ({q_win}).")
    task = tasks[rng.randrange(len(tasks))]
    fact, question, prefix, answer = make_fact(task, rng, passkey_digits)
    # one layout draws nothing, so the stream of a one-layout recipe is the same as before layouts existed
    layout = question_formats[rng.randrange(len(question_formats))] if len(question_formats) > 1 else question_formats[0]
    question = QUESTION_FORMATS[layout].format(question=question, prefix=prefix)
    fact_ids = _encode(tokenizer, fact)
    q_ids, a_ids = answer_tokens(tokenizer, question, answer)
    end_ids = _encode(tokenizer, ".") if answer_end else []
    qa = q_ids + a_ids + end_ids
    if len(fact_ids) > window or len(qa) >= window:
        raise DataError(f"window {window} is too small for a synthetic fact ({len(fact_ids)} tokens) or question ({len(qa)}).")
    length = cut_length(window, windows, last_window_tokens)
    q_end = min((q_win + 1) * window, length)
    if len(qa) >= q_end - q_win * window:
        raise DataError(f"The question window holds {q_end - q_win * window} tokens, too few for a question ({len(qa)}).")
    start = rng.randrange(len(filler))
    ids = np.resize(np.roll(filler, -start), length).astype(np.int64)  # wraps around short filler
    last_fact_end = q_win * window if fact_across_windows else (f_win + 1) * window  # the fact ends by here
    fact_start = f_win * window + rng.randrange(min(window, last_fact_end - f_win * window - len(fact_ids) + 1))
    ids[fact_start : fact_start + len(fact_ids)] = fact_ids
    q_start = q_end - len(qa)
    ids[q_start:q_end] = qa
    labels = np.full(length, -100, dtype=np.int64)
    a_start = q_start + len(q_ids)
    labels[a_start:q_end] = a_ids + end_ids
    return SyntheticSample(
        ids=ids,
        labels=labels,
        task=task,
        fact_span=(fact_start, fact_start + len(fact_ids)),
        question_span=(q_start, a_start),
        answer_span=(a_start, a_start + len(a_ids)),
        answer=answer.strip(),
    )
