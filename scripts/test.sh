#!/usr/bin/env bash
# Set up (if needed), lint (ruff; the layering contract in pyproject.toml), and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1
ruff check .
lint-imports
python -m pytest -q "$@"
