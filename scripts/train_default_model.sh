#!/usr/bin/env bash
# Reproduce the shipped default model glinker-bi-minilm (CPU; see docs/training.md for time and hardware).
# Re-running resumes from the last checkpoints in runs/glinker-bi-minilm*/checkpoints.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export GLINKER_DATA="${GLINKER_DATA:-$(cd .. && pwd)/shared/data}"
$PY scripts/make_training_entities.py --out runs/training-entities.jsonl --data "$GLINKER_DATA"
$PY scripts/make_typed_mentions.py --el "$GLINKER_DATA/el/aida/aida_train.jsonl" \
    --entities runs/training-entities.jsonl --out runs/aida-typed/train.json
$PY scripts/make_wiki_ner.py --data "$GLINKER_DATA" --entities runs/training-entities.jsonl \
    --out runs/wiki-typed/train.json
$PY scripts/make_fine_typed.py --data "$GLINKER_DATA" --entities runs/training-entities.jsonl \
    --out runs/fine-typed/train.json
$PY scripts/make_fine_typed.py --data "$GLINKER_DATA" --entities runs/training-entities.jsonl \
    --out runs/fine-typed-resolved/train.json --resolve --purity 0.7
# the same typed data with numeric and temporal mentions (dates, years, money...) labelled by pattern (stage 10)
$PY scripts/make_wiki_ner.py --data "$GLINKER_DATA" --entities runs/training-entities.jsonl \
    --out runs/wiki-typed-num/train.json --numeric
$PY scripts/make_typed_mentions.py --el "$GLINKER_DATA/el/aida/aida_train.jsonl" \
    --entities runs/training-entities.jsonl --out runs/aida-typed-num/train.json --numeric
# stage 1: the GLiNER head and the top text layer from the packaged encoders (70 min on one core, float32)
$PY -m glinker -v train --config examples/train/glinker-bi-minilm.yaml "$@"
# stage 2: from stage 1, the top three text layers, bfloat16 autocast (49 min on one AMX core)
$PY -m glinker -v train --config examples/train/glinker-bi-minilm-stage2.yaml "$@"
# stage 3: from stage 2, plus KB-typed Wikipedia sentences (open types)
$PY -m glinker -v train --config examples/train/glinker-bi-minilm-stage3.yaml "$@"
# stage 4: from stage 3, the top two label-encoder layers too (v5)
$PY -m glinker -v train --config examples/train/glinker-bi-minilm-stage4-labels.yaml "$@"
# stage 5: from stage 4, the top four label-encoder layers (v6)
$PY -m glinker -v train --config examples/train/glinker-bi-minilm-stage5-labels4.yaml "$@"
# stage 6: from stage 5, the top four text-encoder layers too (v7)
$PY -m glinker -v train --config examples/train/glinker-bi-minilm-stage6-text4.yaml "$@"
# stage 7: from stage 6, all six text and six label layers, plus the fine-typed WikiNEural/WikiANN spans (v8)
$PY -m glinker -v train --config examples/train/glinker-bi-minilm-stage7-fine.yaml "$@"
# stage 8: from stage 7, the looser fine-typed spans (v9)
$PY -m glinker -v train --config examples/train/glinker-bi-minilm-stage8-fine.yaml "$@"
# stage 10b: from stage 8, numeric and temporal mentions, the linking pairs at weight 3; ships the result (v10) as
# 4-bit differences (its recipe starts from the shipped v9: point from_checkpoint at stage 8's final to chain it)
$PY -m glinker -v train --config examples/train/glinker-bi-minilm-stage10b-numeric-linking.yaml \
    --set model.from_checkpoint="$(pwd)/runs/glinker-bi-minilm-stage8-fine/final" \
    --ship glinker/models/glinker-bi-minilm --ship-format int4-diff "$@"
