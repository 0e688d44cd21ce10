"""Why does `niah_number` get no digit when passkeys come back? Ask the same adapter for needles that differ from
`niah_number` in one thing at a time (the colon, the number's length, the sentence), in the same essay haystacks.

A diagnostic, not the evaluation: the variants are built by swapping `tasks._needle`, and nothing here is a
reported target number.

    python docs/experiments/cpu_2h_bigram/number_probe.py outputs/cpu_2h_bigram_ov [--per-variant 12] [--length 1024] [--variants NAME ...]
"""

from __future__ import annotations

import argparse
import json
import random

import torch

from titans_adapter import load_adapter, load_base_model, tasks
from titans_adapter.evaluation import Retrofit, load_corpus, make_examples, run_qa, stop_token_ids

ORIGINAL_NEEDLE = tasks._needle


def magic(value_digits: int, colon: bool, key_digits: bool = True):
    """The niah_number sentence; key_digits=False names it by a word alone ("saddle", not "saddle-364")."""

    def needle(task: str, rng: random.Random) -> tuple[str, str, str]:
        key = tasks._key(rng) if key_digits else rng.choice(tasks.KEY_WORDS)
        value = str(rng.randrange(10 ** (value_digits - 1), 10**value_digits))
        sentence = f"One of the special magic numbers for {key} is{':' if colon else ''} {value}."
        question = (
            f"What is the special magic number for {key} mentioned in the text?\nAnswer: The special magic number for {key} is"
        )
        return sentence, question, value

    return needle


def passkey(value_digits: int):
    def needle(task: str, rng: random.Random) -> tuple[str, str, str]:
        value = str(rng.randrange(10 ** (value_digits - 1), 10**value_digits))
        return (
            f"The pass key is {value}. Remember it. {value} is the pass key.",
            "What is the pass key?\nAnswer: The pass key is",
            value,
        )

    return needle


VARIANTS = {
    "niah_number (as evaluated)": ORIGINAL_NEEDLE,
    "magic, 7 digits, no colon": magic(7, colon=False),
    "magic, 7 digits, key without digits": magic(7, colon=True, key_digits=False),
    "magic, 5 digits, colon": magic(5, colon=True),
    "magic, 5 digits, no colon": magic(5, colon=False),
    "pass key sentence, 7 digits": passkey(7),
    "pass key sentence, 5 digits": passkey(5),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("adapter")
    parser.add_argument("--per-variant", type=int, default=12)
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), metavar="NAME")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    base, tokenizer = load_base_model("default")
    model = load_adapter(base, args.adapter)
    docs = load_corpus(None)
    stops = stop_token_ids(tokenizer)
    depths = [0.1 + 0.5 * i / max(args.per_variant - 1, 1) for i in range(args.per_variant)]  # >= 2 windows back at 1k
    results = {}
    print("| needle | exact | first digit | digits right | answers |")
    print("| --- | ---: | ---: | ---: | --- |")
    for name in args.variants:
        needle = VARIANTS[name]
        tasks._needle = needle
        try:
            examples = make_examples(tokenizer, docs, ["niah_number"], [args.length], depths, 1, args.seed)
        finally:
            tasks._needle = ORIGINAL_NEEDLE
        records = run_qa([Retrofit(model)], examples, tokenizer, stops, lambda *a: None, model.config.window)
        answers = [r["prediction"].strip() for r in records]
        truths = [ex.answer for ex in examples]
        first = sum(a[:1] == t[:1] for a, t in zip(answers, truths)) / len(truths)
        digits = sum(sum(x == y for x, y in zip(a, t)) / len(t) for a, t in zip(answers, truths)) / len(truths)
        exact = sum(r["correct"] for r in records) / len(records)
        results[name] = {"exact": exact, "first_digit": first, "digits": digits, "answers": answers, "truths": truths}
        shown = ", ".join(f"{a} ({t})" for a, t in list(zip(answers, truths))[:4])
        print(f"| {name} | {exact:.0%} | {first:.0%} | {digits:.0%} | {shown} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
