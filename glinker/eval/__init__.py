"""Evaluation: dataset readers (NER and entity linking), NER span F1, EL precision/recall/F1 and recall@k.

Modules import only the standard library and glinker's records, so scoring saved predictions never loads a
model. See ``docs/evaluation.md`` for exactly what each metric counts.
"""
