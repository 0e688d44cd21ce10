"""Which passkey needles does an adapter miss? Their place in the windows, and how far back (README, Training).

For every passkey needle of one or more evaluation reports (scripts/evaluate.py --out DIR), tokenizes the context
up to the needle sentence and takes the sentence's start modulo the window: the sentence ("The pass key is 43985.
Remember it. 43985 is the pass key.", 25 tokens) runs into the next window when it starts after position 103.
Prints a table of start positions against the adapter's exact answers, then exact match per report over all needles
and over the needles that end at least two windows before the question's window (the #7 target's definition;
evaluation.windows_back), which neither attention nor an overlap reaches.

python docs/experiments/cpu_2h_bigram/needle_positions.py REPORT_DIR [REPORT_DIR ...]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from titans_adapter.evaluation import windows_back
from titans_adapter.models import load_tokenizer
from titans_adapter.tasks import Example

BANDS = [(0, 7, "0-7 (window start)"), (8, 103, "8-103 (inside one window)"), (104, 127, "104-127 (runs into the next)")]


def needle_rows(report: Path, tokenizer) -> list[tuple[int, int, bool]]:
    """(sentence start in its window, windows back, retrofit answered exactly) per passkey needle of one report."""
    results = json.loads((report / "results.json").read_text())
    window = results["meta"]["window"]
    exact = {n["uid"]: n["correct"] for n in results["needle"] if n["system"] == "retrofit"}
    rows = []
    for line in (report / "examples.jsonl").read_text().splitlines():
        example = Example(**json.loads(line))
        if example.task != "passkey":
            continue
        start = len(tokenizer(example.context[: example.fact_offsets[0]], add_special_tokens=False).input_ids)
        rows.append((start % window, windows_back(tokenizer, example, window), exact[example.uid]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", nargs="+", type=Path)
    args = parser.parse_args()
    tokenizer = load_tokenizer("default")
    per_report = {report: needle_rows(report, tokenizer) for report in args.reports}
    by_band = defaultdict(lambda: [0, 0, []])
    for start, _, correct in (row for rows in per_report.values() for row in rows):
        band = next(name for low, high, name in BANDS if low <= start <= high)
        by_band[band][0] += correct
        by_band[band][1] += 1
        by_band[band][2].append(f"{start}{'' if correct else '*'}")
    print("| sentence start in its window | exact | starts (* = missed) |")
    print("| --- | ---: | --- |")
    for _, _, name in BANDS:
        right, total, starts = by_band[name]
        print(f"| {name} | {right} of {total} | {' '.join(sorted(starts, key=lambda s: int(s.rstrip('*'))))} |")
    print("\n| report | exact, all needles | exact, needles >= 2 windows back | windows back (* = missed) |")
    print("| --- | ---: | ---: | --- |")
    for report, rows in per_report.items():
        far = [correct for _, back, correct in rows if back >= 2]
        backs = " ".join(f"{back}{'' if correct else '*'}" for _, back, correct in rows)
        print(f"| {report.name} | {sum(r[2] for r in rows)} of {len(rows)} | {sum(far)} of {len(far)} | {backs} |")


if __name__ == "__main__":
    main()
