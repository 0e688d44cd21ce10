"""report.md (tables) and PNG plots from an evaluation's results.json.

The summary table comes first: one row per system, one column per measure, each figure with the number
of examples (or tokens) behind it. Plots use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .evaluation import accuracy  # noqa: E402

SYSTEM_ORDER = ("full attention", "base windowed", "streaming (sinks)", "retrofit")


def _systems(results: dict[str, Any]) -> list[str]:
    names = results["meta"]["systems"]
    return [s for s in SYSTEM_ORDER if s in names] + [s for s in names if s not in SYSTEM_ORDER]


def _fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _pct(acc: tuple[float, int] | None) -> str:
    return "-" if acc is None else f"{100 * acc[0]:.0f}% (n={acc[1]})"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _cost_at(results: dict[str, Any], system: str) -> dict[str, Any] | None:
    """The cost record of a system at its largest measured length (averaged over repeats)."""
    records = [r for r in results["cost"] if r["system"] == system]
    if not records:
        return None
    length = max(r["length"] for r in records)
    at = [r for r in records if r["length"] == length]
    return {
        "length": length,
        "tokens_per_s": sum(r["tokens_per_s"] or 0 for r in at) / len(at),
        "peak_extra_mb": max(r["peak_extra_mb"] for r in at),
    }


def summary_rows(results: dict[str, Any]) -> list[list[str]]:
    """One row per system: perplexity after the first window, gap closed, needle and bAbI accuracy, cost."""
    ppl = results["perplexity"]
    tokens = ppl["tokens_per_system"] - (ppl["window"] * len(ppl["documents"]))
    needle = accuracy(results["needle"], ["system"])
    babi = accuracy(results["babi"], ["system"])
    rows = []
    for system in _systems(results):
        value = ppl["after_first_window"].get(system)
        gap = ppl.get("gap_closed", {}).get(system)
        cost = _cost_at(results, system)
        rows.append(
            [
                system,
                f"{_fmt(value)} ({max(tokens, 0):,} tok)" if value is not None else "- (too long)",
                _fmt(gap),
                _pct(needle.get((system,))),
                _pct(babi.get((system,))),
                f"{cost['tokens_per_s']:.0f} @ {cost['length']}" if cost else "-",
                f"{cost['peak_extra_mb']:.0f}" if cost else "-",
            ]
        )
    return rows


def render_report(results: dict[str, Any], out_dir: str | os.PathLike) -> Path:
    """Write report.md and the plots into out_dir; return the report's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = render_plots(results, out_dir)
    meta = results["meta"]
    ppl = results["perplexity"]
    systems = _systems(results)
    lines = [
        f"# Long-context evaluation: {meta['model']}" + (f" + {meta['adapter']}" if meta.get("adapter") else " (base only)"),
        "",
        f"Suite `{meta['suite']['name']}`, seed {meta['seed']}, window {meta['window']} tokens, {meta['sinks']} attention sinks, "
        f"native context {meta['native_context']}; {meta['device']}, torch {meta['torch']}, {meta['threads']} threads; "
        f"{meta['seconds']} s. Corpus: {meta['corpus']}.",
        "",
        "## Summary",
        "",
    ]
    lines += _table(
        [
            "system",
            "ppl after window 0",
            "gap closed",
            "needle acc.",
            "bAbI-like acc.",
            "tokens/s (scoring) @ length",
            "peak extra MB",
        ],
        summary_rows(results),
    )
    lines += [
        "ppl after window 0: perplexity over all positions past the first window (where the systems differ). "
        "Gap closed: (ppl_windowed - ppl_system) / (ppl_windowed - ppl_full). Full attention only runs on inputs that fit "
        "the native context, so its accuracy covers fewer examples (n).",
        "",
        f"## Perplexity by window ({ppl['length']} tokens x {len(ppl['documents'])} documents)",
        "",
    ]
    n_windows = len(next(iter(ppl["by_window"].values()))) if ppl["by_window"] else 0
    names = [s for s in systems if s in ppl["by_window"]]
    rows = [[str(w)] + [_fmt(ppl["by_window"][s][w][0]) for s in names] for w in range(n_windows)]
    header = ["window"] + names
    if "gap_closed_by_window" in ppl:
        header.append("gap closed (retrofit)")
        for w, row in enumerate(rows):
            row.append(_fmt(ppl["gap_closed_by_window"][w]))
    lines += _table(header, rows)
    lines += [f"![perplexity by window]({plots['ppl_window']})", f"![perplexity by position]({plots['ppl_position']})", ""]
    lines += _qa_section("Needle in a haystack", results["needle"], systems, by_depth=True)
    lines += [f"![{s}]({plots['heatmaps'][s]})" for s in systems if s in plots["heatmaps"]] + [""]
    lines += _qa_section("bAbI-like QA in essays", results["babi"], systems, by_depth=False)
    if plots.get("babi"):
        lines += [f"![bAbI-like accuracy]({plots['babi']})", ""]
    lines += ["## Cost (scoring pass: all positions, all layers)", ""]
    cost_rows = [
        [r["system"], str(r["length"]), _fmt(r["seconds"]), _fmt(r["tokens_per_s"], 0), _fmt(r["peak_extra_mb"], 0), r["memory"]]
        for r in results["cost"]
    ]
    lines += _table(["system", "tokens", "seconds", "tokens/s", "peak extra MB", "memory measure"], cost_rows)
    if plots.get("cost"):
        lines += [f"![cost]({plots['cost']})", ""]
    lines += ["## Hub datasets", ""]
    external = results.get("external", {})
    if "skipped" in external:
        lines += [external["skipped"], ""]
    elif "babilong" in external:
        lines += _qa_section("BABILong (RMT-team/babilong)", external["babilong"], systems, by_depth=False, level="###")
        pg = external.get("pg19_perplexity", {})
        if pg:
            lines += _table(["system", "PG-19 ppl after window 0"], [[s, _fmt(v)] for s, v in pg["after_first_window"].items()])
    else:
        lines += ["Not run in this suite (the full suite tries RMT-team/babilong and PG-19 when the hub is reachable).", ""]
    path = out_dir / "report.md"
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text("\n".join(lines))
    os.replace(tmp, path)
    return path


def _qa_section(title: str, records: list[dict], systems: list[str], by_depth: bool, level: str = "##") -> list[str]:
    lines = [f"{level} {title}", ""]
    if not records:
        return lines + ["No examples.", ""]
    lengths = sorted({r["length"] for r in records})
    by_len = accuracy(records, ["system", "length"])
    lines += ["Accuracy by context length (exact match of the greedy answer):", ""]
    lines += _table(["system"] + [str(n) for n in lengths], [[s] + [_pct(by_len.get((s, n))) for n in lengths] for s in systems])
    tasks = sorted({r["task"] for r in records})
    by_task = accuracy(records, ["system", "task"])
    lines += _table(["system"] + tasks, [[s] + [_pct(by_task.get((s, t))) for t in tasks] for s in systems])
    if all("characters_right" in r for r in records):
        lines += ["Partial credit: share of the answer's characters right, in place (mean over examples):", ""]
        partial = accuracy(records, ["system", "task"], score="characters_right")
        lines += _table(["system"] + tasks, [[s] + [_pct(partial.get((s, t))) for t in tasks] for s in systems])
    far = [r for r in records if (r.get("windows_back") or 0) >= 2]
    if by_depth and far:
        far_acc = accuracy(far, ["system"])
        lines += ["Needles that end at least two windows before the question's window (only the memory reaches them):", ""]
        lines += _table(["system", "exact match"], [[s, _pct(far_acc.get((s,)))] for s in systems])
    if by_depth:
        depths = sorted({r["depth"] for r in records})
        grid = accuracy(records, ["system", "length", "depth"])
        for s in systems:
            lines += [f"{s}: accuracy by length (rows) x needle depth (columns)", ""]
            lines += _table(
                ["length"] + [str(d) for d in depths], [[str(n)] + [_pct(grid.get((s, n, d))) for d in depths] for n in lengths]
            )
    return lines


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def render_plots(results: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """PNG files; returns their names (relative to out_dir)."""
    systems = _systems(results)
    ppl = results["perplexity"]
    plots: dict[str, Any] = {"heatmaps": {}}

    fig, ax = plt.subplots(figsize=(6, 4))
    for s in systems:
        if s in ppl["by_window"]:
            ax.plot(range(len(ppl["by_window"][s])), [p for p, _ in ppl["by_window"][s]], marker="o", label=s)
    ax.set(xlabel=f"window index ({ppl['window']} tokens each)", ylabel="perplexity", title="Perplexity by window")
    _log_if_wide(ax, [p for rows in ppl["by_window"].values() for p, _ in rows])
    ax.legend()
    plots["ppl_window"] = _save(fig, out_dir / "ppl_by_window.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    width = ppl["by_position"]["bin_width"]
    for s in systems:
        rows = ppl["by_position"]["ppl"].get(s)
        if rows:
            ax.plot([width * (i + 0.5) for i in range(len(rows))], [p for p, _ in rows], marker="o", label=s)
    ax.set(xlabel="position inside the window (tokens)", ylabel="perplexity", title="Perplexity by position in a window")
    _log_if_wide(ax, [p for rows in ppl["by_position"]["ppl"].values() for p, _ in rows])
    ax.legend()
    plots["ppl_position"] = _save(fig, out_dir / "ppl_by_position.png")

    needle = results["needle"]
    if needle:
        lengths = sorted({r["length"] for r in needle})
        depths = sorted({r["depth"] for r in needle})
        grid = accuracy(needle, ["system", "length", "depth"])
        for s in systems:
            values = [[grid.get((s, n, d), (math.nan, 0))[0] for n in lengths] for d in depths]  # (depth, length)
            fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(lengths), 1.2 + 0.6 * len(depths)))
            image = ax.imshow(values, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
            ax.set_xticks(range(len(lengths)), [str(n) for n in lengths])
            ax.set_yticks(range(len(depths)), [str(d) for d in depths])
            for i, row in enumerate(values):
                for j, v in enumerate(row):
                    ax.text(j, i, "n/a" if math.isnan(v) else f"{100 * v:.0f}", ha="center", va="center", fontsize=8)
            ax.set(xlabel="context length (tokens)", ylabel="needle depth", title=f"Needle accuracy: {s}")
            fig.colorbar(image, ax=ax)
            plots["heatmaps"][s] = _save(fig, out_dir / f"niah_{_safe(s)}.png")

    babi = results["babi"]
    if babi:
        lengths = sorted({r["length"] for r in babi})
        by_len = accuracy(babi, ["system", "length"])
        fig, ax = plt.subplots(figsize=(6, 4))
        for s in systems:
            xs = [n for n in lengths if (s, n) in by_len]
            ax.plot(xs, [by_len[(s, n)][0] for n in xs], marker="o", label=s)
        ax.set(xlabel="context length (tokens)", ylabel="accuracy", ylim=(-0.05, 1.05), title="bAbI-like QA accuracy")
        ax.set_xscale("log", base=2)
        ax.legend()
        plots["babi"] = _save(fig, out_dir / "babi_by_length.png")

    cost = results["cost"]
    if cost:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        for s in systems:
            rows = sorted((r["length"], r["tokens_per_s"] or 0, r["peak_extra_mb"]) for r in cost if r["system"] == s)
            if rows:
                ax1.plot([r[0] for r in rows], [r[1] for r in rows], marker="o", label=s)
                ax2.plot([r[0] for r in rows], [r[2] for r in rows], marker="o", label=s)
        ax1.set(xlabel="tokens", ylabel="tokens/s", title="Scoring throughput")
        ax2.set(xlabel="tokens", ylabel="MB", title="Peak extra memory")
        ax1.legend()
        plots["cost"] = _save(fig, out_dir / "cost.png")
    return plots


def _log_if_wide(ax: Any, values: list[float]) -> None:
    """A log y axis when the curves span more than 10x (a diverging system would flatten the others)."""
    finite = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    if finite and max(finite) > 10 * min(finite):
        ax.set_yscale("log")


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)
    return path.name
