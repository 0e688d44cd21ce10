"""Data: loading local files, splitting by document, packing into windows, clear errors on bad data."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from titans_adapter.data import DataError, load_documents, load_essays, pack_documents, prepare_splits, split_documents


class CharTokenizer:
    """One token per character: fast and exact, enough to check packing."""

    eos_token_id = 0

    def __call__(self, text: str, add_special_tokens: bool = False):
        return SimpleNamespace(input_ids=[ord(c) % 5000 + 1 for c in text])


def docs_of_lengths(lengths: list[int]) -> dict[str, str]:
    return {f"doc{i:02d}": chr(ord("a") + i % 26) * n for i, n in enumerate(lengths)}


def test_default_corpus_loads():
    essays = load_essays()
    assert len(essays) >= 40 and all(text.strip() for text in essays.values())
    assert load_documents(None).keys() == essays.keys()


def test_split_is_by_document_and_packing_never_crosses_it():
    docs = docs_of_lengths([300, 50, 700, 120, 90, 260, 1000, 40, 500, 333, 64, 900])
    train, val = prepare_splits(docs, CharTokenizer(), window=32, windows_per_sample=4, val_fraction=0.3, seed=1)
    train_names, val_names = split_documents(list(docs), 0.3, seed=1)
    assert not set(train_names) & set(val_names) and set(train_names) | set(val_names) == set(docs)
    assert {n for src in train.sources for n in src} <= set(train_names)
    assert {n for src in val.sources for n in src} <= set(val_names)
    # Every sample is a contiguous piece of the one document it names (each doc is a single repeated letter).
    for split in (train, val):
        for row, src in zip(split.samples, split.sources):
            assert len(src) == 1 and len(set(row.tolist())) == 1
            assert row[0] == ord(docs[src[0]][0]) % 5000 + 1


def test_short_documents_dropped_or_concatenated_and_counted():
    docs = {"long": "x" * 200, "s1": "a" * 20, "s2": "b" * 30, "s3": "c" * 50}
    tokens = {k: CharTokenizer()(v).input_ids for k, v in docs.items()}
    dropped = pack_documents(tokens, window=32, windows_per_sample=2, short_docs="drop", eos_id=0)
    assert dropped.stats.dropped_short == 3 and dropped.stats.concatenated_short == 0
    assert dropped.stats.samples == 200 // 64 and all(s == ["long"] for s in dropped.sources)
    concat = pack_documents(tokens, window=32, windows_per_sample=2, short_docs="concat", eos_id=0)
    assert concat.stats.dropped_short == 0 and concat.stats.concatenated_short == 3
    assert concat.stats.samples == 200 // 64 + (20 + 30 + 50 + 3) // 64
    assert "dropped 3" in dropped.stats.summary("train")


def test_all_documents_too_short_is_a_clear_error():
    docs = docs_of_lengths([10, 20, 30, 40])
    with pytest.raises(DataError, match="No train sample"):
        prepare_splits(docs, CharTokenizer(), window=32, windows_per_sample=4, val_fraction=0.5, seed=0)


def test_local_txt_jsonl_parquet(tmp_path):
    (tmp_path / "a.txt").write_text("first document")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in ["second", "third", ""]))
    import datasets

    datasets.Dataset.from_dict({"body": ["fourth", "fifth"]}).to_parquet(str(tmp_path / "c.parquet"))
    docs = load_documents(str(tmp_path / "sub"))
    assert list(docs.values()) == ["second", "third"]  # the empty line is not a document
    assert list(load_documents(str(tmp_path / "c.parquet"), text_field="body").values()) == ["fourth", "fifth"]
    assert "first document" in load_documents(str(tmp_path / "a.txt")).values()
    with pytest.raises(DataError, match="no 'text' field"):
        load_documents(str(tmp_path / "c.parquet"))


def test_missing_and_empty_datasets(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_documents(str(tmp_path / "missing"))
    with pytest.raises(DataError, match="No data files"):
        load_documents(str(tmp_path))
    (tmp_path / "empty.txt").write_text("   \n")
    with pytest.raises(DataError, match="no non-empty document"):
        load_documents(str(tmp_path))
