#!/usr/bin/env bash
# Create .venv and install mte with everything it needs (idempotent; a fresh machine needs only Python 3.11+).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# torch first, pinned: on this workplace the CPU wheel lies on local disk; elsewhere pip fetches it.
python -c "import torch" 2>/dev/null || python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[dev]"
