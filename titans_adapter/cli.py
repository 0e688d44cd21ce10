"""What the scripts share: turn expected errors into one clear line and exit status 2."""

from __future__ import annotations

import sys
from collections.abc import Callable

# Bad input of every kind the library reports (ConfigError, AdapterError, MemoryStateError, EvaluationError,
# ModelLoadError, ...) derives from one of these.
EXPECTED_ERRORS = (ValueError, RuntimeError, FileNotFoundError)


def run_script(main: Callable[[], object]) -> None:
    """Run a script's main(); an expected error prints `error: ...` instead of a traceback and exits with 2."""
    try:
        main()
    except EXPECTED_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
