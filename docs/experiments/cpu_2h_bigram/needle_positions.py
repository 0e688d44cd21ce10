"""Which passkey needles does an adapter miss? Their place in the 128-token windows (README, Training).

For every passkey needle of one or more evaluation reports (scripts/evaluate.py --out DIR), tokenizes the context
up to the needle sentence and takes the sentence's start modulo the window: the sentence ("The pass key is 43985.
Remember it. 43985 is the pass key.", 25 tokens) runs into the next window when it starts after position 103.
Prints a table of start positions against the adapter's exact answers.

python docs/experiments/cpu_2h_bigram/needle_positions.py REPORT_DIR [REPORT_DIR ...]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from titans_adapter.models import load_tokenizer

BANDS = [(0, 7, "0-7 (window start)"), (8, 103, "8-103 (inside one window)"), (104, 127, "104-127 (runs into the next)")]


def needle_starts(report: Path, tokenizer) -> list[tuple[int, bool]]:
    """(sentence start in its window, retrofit answered exactly) per passkey needle of one report."""
    results = json.loads((report / "results.json").read_text())
    window = results["meta"]["window"]
    exact = {n["uid"]: n["correct"] for n in results["needle"] if n["system"] == "retrofit"}
    rows = []
    for line in (report / "examples.jsonl").read_text().splitlines():
        example = json.loads(line)
        if example["task"] != "passkey":
            continue
        offset = example["context"].index(f"The pass key is {example['answer']}")
        start = len(tokenizer(example["context"][:offset], add_special_tokens=False).input_ids)
        rows.append((start % window, exact[example["uid"]]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", nargs="+", type=Path)
    args = parser.parse_args()
    tokenizer = load_tokenizer("default")
    rows = [row for report in args.reports for row in needle_starts(report, tokenizer)]
    by_band = defaultdict(lambda: [0, 0, []])
    for start, correct in rows:
        band = next(name for low, high, name in BANDS if low <= start <= high)
        by_band[band][0] += correct
        by_band[band][1] += 1
        by_band[band][2].append(f"{start}{'' if correct else '*'}")
    print("| sentence start in its window | exact | starts (* = missed) |")
    print("| --- | ---: | --- |")
    for _, _, name in BANDS:
        right, total, starts = by_band[name]
        print(f"| {name} | {right} of {total} | {' '.join(sorted(starts, key=lambda s: int(s.rstrip('*'))))} |")


if __name__ == "__main__":
    main()
