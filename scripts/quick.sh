#!/usr/bin/env bash
# Main job on a fresh machine: set up, run the quick MRPC sweep (bundled MiniLM, all methods, 3 seeds) on
# local Ray with MLflow in ./mlflow.db; the sweep writes its report once (and logs it on its parent run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
if [ -z "${MTE_DATA_DIR:-}" ] && [ -d ../shared/data/glue ]; then export MTE_DATA_DIR=$PWD/../shared/data/glue; fi
mte sweep --preset quick "$@"   # writes the report when every trial finished (mte-report/<sweep hash>/)
