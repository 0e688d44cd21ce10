"""Deterministic long-context tasks: needles in a haystack (RULER S-NIAH style) and bAbI-like QA in essays.

Every example is a context (a haystack with facts inserted at known character offsets), a question that
follows the context, and a short answer. The same (seed, task, length, depth, index) always gives the same
example: randomness comes from `random.Random` seeded with a string, which is stable across runs and
platforms. `oracle_answer` recovers the answer from the text alone (what a reader of the whole input can
do), so tests can check that every generated example is answerable and unambiguous.
"""

from __future__ import annotations

import json
import os
import random
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from transformers import PreTrainedTokenizerBase

NEEDLE_TASKS = ("passkey", "niah_number", "niah_uuid", "niah_multikey")
BABI_TASKS = ("qa1", "qa2", "qa3", "qa4", "qa5")
ALL_TASKS = NEEDLE_TASKS + BABI_TASKS

PASSKEY_FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
NEEDLE_HEADER = "A special magic value is hidden in the following text. Memorize it: you will be asked about it afterwards.\n"
BABI_HEADER = "A short story is hidden in the following text. Read it: you will be asked a question about it afterwards.\n"

PEOPLE = ("Mary", "John", "Daniel", "Sandra")
PLACES = ("bathroom", "hallway", "garden", "office", "bedroom", "kitchen")
OBJECTS = ("apple", "football", "milk")
MOVES = ("moved to", "went to", "journeyed to", "travelled to", "went back to")
TAKES = ("picked up", "got", "grabbed")
DIRECTIONS = ("north", "south", "east", "west")
KEY_WORDS = (
    "apple",
    "river",
    "lantern",
    "violet",
    "marble",
    "cobalt",
    "falcon",
    "harbor",
    "pepper",
    "quartz",
    "saddle",
    "tundra",
)


class TaskError(ValueError):
    """A task name, length or depth that cannot be generated."""


@dataclass
class Example:
    """One long-context question.

    context: the haystack with the facts inserted; question: appended right after the context;
    answer: the expected short answer (exact match after normalization).
    facts: the inserted sentences; fact_offsets: where each starts in `context` (character offsets).
    depth: relative position of the queried fact (needle tasks), None for bAbI stories.
    """

    task: str
    uid: str
    context: str
    question: str
    answer: str
    target_length: int  # tokens of context + question + the answer's budget (see answer_budget)
    depth: float | None
    facts: list[str] = field(default_factory=list)
    fact_offsets: list[int] = field(default_factory=list)

    @property
    def prompt(self) -> str:
        """The whole input a model reads before answering."""
        return self.context + self.question

    def to_dict(self) -> dict:
        return asdict(self)


def task_rng(seed: int, *parts: object) -> random.Random:
    """A generator seeded by a string: stable across processes (unlike hash())."""
    return random.Random("|".join(str(p) for p in (seed, *parts)))


def split_sentences(text: str) -> list[str]:
    """Sentences of a text (split after . ! ? followed by whitespace), whitespace collapsed, empty ones dropped."""
    text = re.sub(r"\s+", " ", text).strip()
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if s]


class Haystack:
    """Filler text cut into sentences with their token counts, so a haystack of n tokens is cheap to assemble."""

    def __init__(self, texts: Iterable[str], tokenizer: PreTrainedTokenizerBase, repeat: bool = False) -> None:
        self.sentences = [s for text in texts for s in split_sentences(text)]
        if not self.sentences:
            raise TaskError("The haystack corpus holds no text.")
        counts = tokenizer([" " + s for s in self.sentences], add_special_tokens=False).input_ids
        self.tokens = [len(c) for c in counts]
        self.repeat = repeat  # repeated filler (passkey): always start at the first sentence

    def take(self, n_tokens: int, rng: random.Random) -> list[str]:
        """Consecutive sentences (wrapping around the corpus) totalling about n_tokens."""
        start = 0 if self.repeat else rng.randrange(len(self.sentences))
        out: list[str] = []
        total, i = 0, start
        while total < n_tokens:
            j = i % len(self.sentences)
            if total + self.tokens[j] > n_tokens:  # the last sentence does not fit: keep the share of its words that does
                words = self.sentences[j].split()
                keep = len(words) * (n_tokens - total) // self.tokens[j]
                if keep:
                    out.append(" ".join(words[:keep]))
                break
            out.append(self.sentences[j])
            total += self.tokens[j]
            i += 1
        return out


def _insert(filler: list[str], facts: Sequence[str], depths: Sequence[float], header: str) -> tuple[str, list[int]]:
    """Insert facts between filler sentences at relative depths (by characters, to the nearest sentence
    boundary); return the context and each fact's character offset."""
    cum = [0]
    for sentence in filler:
        cum.append(cum[-1] + len(sentence) + 1)
    slots = [min(range(len(cum)), key=lambda i, t=d * cum[-1]: abs(cum[i] - t)) for d in depths]
    order = sorted(range(len(facts)), key=lambda k: (slots[k], k))
    pieces: list[tuple[str, int]] = []
    fact_at: dict[int, list[int]] = {}
    for k in order:
        fact_at.setdefault(slots[k], []).append(k)
    for i in range(len(filler) + 1):
        for k in fact_at.get(i, []):
            pieces.append(("fact", k))
        if i < len(filler):
            pieces.append(("filler", i))
    context = header
    offsets = [0] * len(facts)
    for n, (kind, idx) in enumerate(pieces):
        if n:
            context += " "
        if kind == "fact":
            offsets[idx] = len(context)
            context += facts[idx]
        else:
            context += filler[idx]
    return context + "\n", offsets


def _count(tokenizer: PreTrainedTokenizerBase, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False).input_ids)


def answer_budget(tokenizer: PreTrainedTokenizerBase, answer: str) -> int:
    """Tokens reserved for the greedy answer: the answer's own tokens plus a few for what follows it."""
    return _count(tokenizer, " " + answer) + 3


def _filler_budget(
    tokenizer: PreTrainedTokenizerBase, length: int, header: str, facts: Sequence[str], question: str, answer: str
) -> int:
    """Filler tokens so that context + question + the answer's budget total about `length` tokens."""
    used = (
        _count(tokenizer, header + question)
        + sum(_count(tokenizer, " " + f) for f in facts)
        + answer_budget(tokenizer, answer)
        + 2
    )
    budget = length - used - length // 200  # slack: sentences tokenized alone vs joined differ by a few tokens
    if budget < 0:
        raise TaskError(f"length {length} is too short for the task's facts, question and answer ({used} tokens).")
    return budget


# ----- needle tasks -------------------------------------------------------------------------------------
def _key(rng: random.Random) -> str:
    return f"{rng.choice(KEY_WORDS)}-{rng.randrange(100, 1000)}"


def _needle(task: str, rng: random.Random) -> tuple[str, str, str]:
    """(needle sentence, question ending in the answer's prefix, answer) of one needle task."""
    if task == "passkey":
        value = str(rng.randrange(10000, 100000))
        return (
            f"The pass key is {value}. Remember it. {value} is the pass key.",
            "What is the pass key?\nAnswer: The pass key is",
            value,
        )
    key = _key(rng)
    if task == "niah_uuid":
        value = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        kind = "uuid"
    else:
        value = str(rng.randrange(1000000, 10000000))
        kind = "number"
    sentence = f"One of the special magic {kind}s for {key} is: {value}."
    question = f"What is the special magic {kind} for {key} mentioned in the text?\nAnswer: The special magic {kind} for {key} is"
    return sentence, question, value


def make_needle(
    task: str,
    tokenizer: PreTrainedTokenizerBase,
    haystack: Haystack,
    length: int,
    depth: float,
    rng: random.Random,
    distractors: int = 3,
) -> Example:
    """A needle (passkey, number, UUID; multi-key adds distractor needles with other keys) at `depth` of the context."""
    if not 0.0 <= depth <= 1.0:
        raise TaskError(f"depth must be in [0, 1], got {depth}.")
    base_task = "niah_number" if task == "niah_multikey" else task
    needle, question, answer = _needle(base_task, rng)
    facts, depths = [needle], [depth]
    if task == "niah_multikey":
        asked_key = needle.split(" for ")[1].split(" is:")[0]
        while len(facts) < 1 + distractors:
            other, _, value = _needle("niah_number", rng)
            if asked_key not in other and value != answer and all(other.split(" is:")[0] != f.split(" is:")[0] for f in facts):
                facts.append(other)
                depths.append(rng.random())
    header = NEEDLE_HEADER
    question = "\nQuestion: " + question
    filler = haystack.take(_filler_budget(tokenizer, length, header, facts, question, answer), rng)
    context, offsets = _insert(filler, facts, depths, header)
    return Example(task, "", context, question, answer, length, depth, facts, offsets)


# ----- bAbI-like stories --------------------------------------------------------------------------------
def _moves(rng: random.Random, people: Sequence[str], n: int, where: dict[str, str]) -> list[str]:
    """n random 'X went to the Y.' facts, updating `where`; a person never 'moves' to where they already are."""
    out = []
    for _ in range(n):
        person = rng.choice(people)
        place = rng.choice([p for p in PLACES if p != where.get(person)])
        where[person] = place
        out.append(f"{person} {rng.choice(MOVES)} the {place}.")
    return out


def _babi_story(task: str, rng: random.Random) -> tuple[list[str], str, str]:
    """(facts in story order, question ending in a one-word answer's prefix, answer) of a bAbI-like task qa1..qa5."""
    where: dict[str, str] = {}
    if task == "qa1":  # single supporting fact
        facts = _moves(rng, PEOPLE, rng.randint(4, 6), where)
        person = rng.choice(sorted(where))
        return facts, f"Where is {person}?\nAnswer: {person} is in the", where[person]
    if task in ("qa2", "qa3"):  # two / three supporting facts: an object carried around
        person, obj = rng.choice(PEOPLE), rng.choice(OBJECTS)
        others = [p for p in PEOPLE if p != person]
        facts = _moves(rng, others, rng.randint(1, 2), where)
        facts += _moves(rng, [person], 1, where)
        facts.append(f"{person} {rng.choice(TAKES)} the {obj}.")
        visited = [where[person]]
        for _ in range(2):
            facts += _moves(rng, others, rng.randint(0, 1), where)
            place = rng.choice([p for p in PLACES if p not in visited])
            where[person] = place
            visited.append(place)
            facts.append(f"{person} {rng.choice(MOVES)} the {place}.")
        if task == "qa2":
            return facts, f"Where is the {obj}?\nAnswer: The {obj} is in the", where[person]
        return (
            facts,
            f"Where was the {obj} before the {visited[2]}?\nAnswer: Before the {visited[2]}, the {obj} was in the",
            visited[1],
        )
    if task == "qa4":  # two-argument relations
        center = rng.choice(PLACES)
        a, b = rng.sample([p for p in PLACES if p != center], 2)
        d1, d2 = rng.sample(DIRECTIONS, 2)
        facts = [f"The {a} is {d1} of the {center}.", f"The {b} is {d2} of the {center}."]
        rng.shuffle(facts)
        asked, answer = rng.choice([(d1, a), (d2, b)])
        return facts, f"What is {asked} of the {center}?\nAnswer: {asked.capitalize()} of the {center} is the", answer
    if task == "qa5":  # three-argument relations
        objects = list(OBJECTS)
        rng.shuffle(objects)
        pairs = rng.sample([(g, r) for g in PEOPLE for r in PEOPLE if g != r], len(objects))
        gives = [(g, o, r) for (g, r), o in zip(pairs, objects)]
        facts = [f"{g} {rng.choice(('gave', 'handed', 'passed'))} the {o} to {r}." for g, o, r in gives]
        g, o, r = rng.choice(gives)
        kind = rng.randrange(3)
        if kind == 0:
            return facts, f"Who gave the {o} to {r}?\nAnswer: The {o} was given to {r} by", g
        if kind == 1:
            return facts, f"Who did {g} give the {o} to?\nAnswer: {g} gave the {o} to", r
        return facts, f"What did {g} give to {r}?\nAnswer: {g} gave {r} the", o
    raise TaskError(f"Unknown bAbI task '{task}'; valid: {', '.join(BABI_TASKS)}.")


def make_babi(task: str, tokenizer: PreTrainedTokenizerBase, haystack: Haystack, length: int, rng: random.Random) -> Example:
    """A bAbI-like story whose sentences are scattered, in order, through an essay haystack."""
    facts, question, answer = _babi_story(task, rng)
    question = f"\nQuestion: {question}"
    depths = sorted(rng.random() for _ in facts)
    filler = haystack.take(_filler_budget(tokenizer, length, BABI_HEADER, facts, question, answer), rng)
    context, offsets = _insert(filler, facts, depths, BABI_HEADER)
    return Example(task, "", context, question, answer, length, None, facts, offsets)


def make_example(
    task: str,
    tokenizer: PreTrainedTokenizerBase,
    haystacks: dict[str, Haystack],
    length: int,
    depth: float | None,
    seed: int,
    index: int,
) -> Example:
    """The example `index` of a (task, length, depth) cell: deterministic in all its arguments.

    haystacks: "essays" (any long text) and "passkey" (repeated filler) haystacks.
    """
    if task not in ALL_TASKS:
        raise TaskError(f"Unknown task '{task}'; valid: {', '.join(ALL_TASKS)}.")
    if length < 16:
        raise TaskError(f"length must be >= 16 tokens, got {length}.")
    rng = task_rng(seed, task, length, depth, index)
    if task == "passkey":
        example = make_needle(task, tokenizer, haystacks["passkey"], length, float(depth or 0.0), rng)
    elif task in NEEDLE_TASKS:
        example = make_needle(task, tokenizer, haystacks["essays"], length, float(depth or 0.0), rng)
    else:
        example = make_babi(task, tokenizer, haystacks["essays"], length, rng)
    example.uid = f"{task}-L{length}-d{depth}-s{seed}-i{index}"
    return example


def passkey_haystack(tokenizer: PreTrainedTokenizerBase) -> Haystack:
    """The repeated 'The grass is green...' filler of passkey retrieval."""
    return Haystack([" ".join([PASSKEY_FILLER] * 8)], tokenizer, repeat=True)


# ----- answers and scoring ------------------------------------------------------------------------------
def normalize(text: str) -> list[str]:
    """Lowercased words, punctuation other than '-' removed (UUIDs keep their dashes)."""
    return re.sub(r"[^\w\s-]", " ", text.lower()).split()


def _first_line_words(prediction: str) -> list[str]:
    """The normalized words of the prediction's first non-empty line: what an answer is scored on."""
    return normalize(prediction.strip().split("\n", 1)[0])


def exact_match(prediction: str, answer: str) -> bool:
    """The first non-empty line of the prediction starts with exactly the answer's words (what follows is ignored)."""
    want = normalize(answer)
    got = _first_line_words(prediction)
    return bool(want) and got[: len(want)] == want


def characters_right(prediction: str, answer: str) -> float:
    """Share of the answer's characters that the prediction's first line has at the same place (partial
    credit: a 5-digit key with its first 3 digits right scores 0.6; exact_match stays the measure)."""
    want = " ".join(normalize(answer))
    got = " ".join(_first_line_words(prediction))
    if not want:
        return 0.0
    return sum(a == b for a, b in zip(want, got)) / len(want)


def _babi_oracle(context: str, question: str) -> str:
    """Simulate the story's world from every story sentence found in the text, then answer the question."""
    where: dict[str, str] = {}
    holding: dict[str, str] = {}
    history: dict[str, list[str]] = {}
    relations: dict[tuple[str, str], str] = {}
    gives: list[tuple[str, str, str]] = []
    people, places, objs = "|".join(PEOPLE), "|".join(PLACES), "|".join(OBJECTS)
    pattern = re.compile(
        rf"(?P<mp>{people}) (?:{'|'.join(MOVES)}) the (?P<ml>{places})\."
        rf"|(?P<tp>{people}) (?:{'|'.join(TAKES)}) the (?P<to>{objs})\."
        rf"|The (?P<ra>{places}) is (?P<rd>{'|'.join(DIRECTIONS)}) of the (?P<rc>{places})\."
        rf"|(?P<gg>{people}) (?:gave|handed|passed) the (?P<go>{objs}) to (?P<gr>{people})\."
    )
    for m in pattern.finditer(context):
        if m["mp"]:
            where[m["mp"]] = m["ml"]
            for obj, holder in holding.items():
                if holder == m["mp"]:
                    history[obj].append(m["ml"])
        elif m["tp"]:
            holding[m["to"]] = m["tp"]
            history[m["to"]] = [where.get(m["tp"], "")]
        elif m["ra"]:
            relations[(m["rd"], m["rc"])] = m["ra"]
        else:
            gives.append((m["gg"], m["go"], m["gr"]))
    q = question
    if m := re.search(rf"Where is ({people})\?", q):
        return where.get(m[1], "")
    if m := re.search(rf"Where is the ({objs})\?", q):
        return history.get(m[1], [""])[-1]
    if m := re.search(rf"Where was the ({objs}) before the ({places})\?", q):
        seen = history.get(m[1], [])
        return seen[seen.index(m[2]) - 1] if m[2] in seen[1:] else ""
    if m := re.search(rf"What is ({'|'.join(DIRECTIONS)}) of the ({places})\?", q):
        return relations.get((m[1], m[2]), "")
    if m := re.search(rf"Who gave the ({objs}) to ({people})\?", q):
        return next((g for g, o, r in gives if o == m[1] and r == m[2]), "")
    if m := re.search(rf"Who did ({people}) give the ({objs}) to\?", q):
        return next((r for g, o, r in gives if g == m[1] and o == m[2]), "")
    if m := re.search(rf"What did ({people}) give to ({people})\?", q):
        return next((o for g, o, r in gives if g == m[1] and r == m[2]), "")
    return ""


def oracle_answer(example: Example) -> str:
    """The answer recovered from the input text alone, by a reader that sees all of it."""
    if example.task == "passkey":
        found = re.findall(r"The pass key is (\d+)\.", example.context)
        return found[0] if len(set(found)) == 1 else ""
    if example.task in NEEDLE_TASKS:
        key = re.search(r"special magic \w+ for (\S+) is", example.question)
        found = re.findall(rf"special magic \w+s for {re.escape(key[1])} is: (\S+)\.", example.context) if key else []
        return found[0] if len(found) == 1 else ""
    return _babi_oracle(example.context, example.question)


# ----- dumps --------------------------------------------------------------------------------------------
def dump_jsonl(examples: Iterable[Example | dict], path: str | os.PathLike) -> Path:
    """Write one JSON object per example (temp file + rename, so a crash leaves no half file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as f:
        for ex in examples:
            f.write(json.dumps(ex.to_dict() if isinstance(ex, Example) else ex, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def constant_guesser(answer: str = "the") -> Callable[[Example], str]:
    """A baseline that always says the same thing (scores ~0 on needles, ~chance on bAbI)."""
    return lambda example: answer
