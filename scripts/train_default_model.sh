#!/usr/bin/env bash
# Reproduce the shipped default model glinker-bi-minilm (CPU; see docs/training.md for time and hardware).
# Re-running resumes from the last checkpoint in runs/glinker-bi-minilm/checkpoints.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export GLINKER_DATA="${GLINKER_DATA:-$(cd .. && pwd)/shared/data}"
$PY scripts/make_training_entities.py --out runs/training-entities.jsonl --data "$GLINKER_DATA"
$PY scripts/make_typed_mentions.py --el "$GLINKER_DATA/el/aida/aida_train.jsonl" \
    --entities runs/training-entities.jsonl --out runs/aida-typed/train.json
$PY -m glinker -v train --config examples/train/glinker-bi-minilm.yaml --ship glinker/models/glinker-bi-minilm "$@"
