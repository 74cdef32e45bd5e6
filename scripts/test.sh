#!/usr/bin/env bash
# Set up (if needed), lint (ruff; the layering contract in pyproject.toml), and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The browser test (tests/test_sweep_local.py) drives Debian's headless Chromium: install it where we may.
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
fi
. .venv/bin/activate
export HF_HUB_OFFLINE=1
ruff check .
lint-imports
python -m pytest -q "$@"
