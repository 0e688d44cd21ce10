"""Where do needle answers go wrong? For each answer position (digit 1, 2, ..., then the "." that ends it), the share
of needles whose first mistake is there, among those right up to it (a task's answers share one length, as in the
needle evaluation). Reads evaluate.py results files.

    python docs/experiments/cpu_2h_bigram/digit_slips.py docs/experiments/cpu_2h_bigram/needles_seed1_ov_named.json ...
"""

from __future__ import annotations

import argparse
import json
from collections import Counter


def first_slips(records: list[dict]) -> tuple[Counter, Counter]:
    """(needles right up to position i, needles whose first mistake is at i); position len(answer) is the '.'."""
    reached, slipped = Counter(), Counter()
    for record in records:
        truth, said = record["answer"] + ".", record["prediction"].strip()
        for i in range(len(truth)):
            reached[i] += 1
            if i >= len(said) or said[i] != truth[i]:
                slipped[i] += 1
                break
    return reached, slipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+")
    args = parser.parse_args()
    records = [r for path in args.results for r in json.load(open(path))["needle"] if r["system"] == "retrofit"]
    for task in sorted({r["task"] for r in records}):
        of_task = [r for r in records if r["task"] == task]
        reached, slipped = first_slips(of_task)
        digits = len(of_task[0]["answer"])
        cells = [f"{'.' if i == digits else i + 1}: {slipped[i]}/{reached[i]}" for i in sorted(reached)]
        print(f"{task}: first mistake at position (of needles right so far): " + ", ".join(cells))


if __name__ == "__main__":
    main()
