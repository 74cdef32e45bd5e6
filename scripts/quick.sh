#!/usr/bin/env bash
# Main job on a fresh machine: set up, run the quick MRPC sweep (bundled MiniLM, all methods, 3 seeds) on
# local Ray with MLflow in ./mlflow.db, and write its report (the sweep writes it when every trial finished).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
if [ -z "${MTE_DATA_DIR:-}" ] && [ -d ../shared/data/glue ]; then export MTE_DATA_DIR=$PWD/../shared/data/glue; fi
mte sweep --preset quick "$@"
mte report --experiment mte --out mte-report/quick
echo "report: mte-report/quick/report.html   MLflow UI: mte ui"
