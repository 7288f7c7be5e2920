"""Labels and texts that the model API tests share (their tiny checkpoint: the `tiny` and `model` fixtures of
conftest.py)."""

from __future__ import annotations

LABELS = ["person", "organization", "location", "date"]
TEXTS = [
    "John Smith works at Google in London.",
    "Paris is the capital of France.",
    "Maria Lopez from Acme Corp met the United Nations in Berlin on 3 March 2021.",
]
