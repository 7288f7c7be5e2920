"""Shared helpers: compare glinker's BiEncoder with goldens recorded from gliner 0.2.29."""

from __future__ import annotations

from pathlib import Path

import torch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gliner"
ENCODERS = ("modernbert", "deberta")
VARIANTS = ("modernbert-token", "modernbert-fusion")


def load_golden(path: Path) -> dict:
    return torch.load(str(path), weights_only=True)


def setting_args(key: str) -> dict:
    t, flat, multi = key.split("|")
    return {"threshold": float(t), "flat_ner": flat == "1", "multi_label": multi == "1"}


def prompts_per_row(case: dict) -> list[list[str]]:
    et = case["entity_types"]
    n = len(case["words"])
    return et if et and isinstance(et[0], list) else [et] * n


def conforming_rows(tokenizer, case: dict) -> tuple[dict, list[int]]:
    """The case restricted to its texts whose every word gets a token, and the indices of the others. On those
    (a lone combining mark or zero-width space between spaces) gliner's running word count shifts every later
    word's vector onto the word before it; glinker keeps each word at its own index instead, on purpose."""
    n = len(case["texts"])
    drop = [i for i, ws in enumerate(case["words"])
            if set(range(len(ws))) - set(w for w in tokenizer(ws, is_split_into_words=True).word_ids() if w is not None)
            and len(tokenizer(ws, is_split_into_words=True)["input_ids"]) < tokenizer.model_max_length]
    if not drop:
        return case, []
    keep = [i for i in range(n) if i not in drop]

    def sub(v):
        if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == n:
            return v[keep]
        if isinstance(v, list) and len(v) == n and v is not case["labels"] and v is not case["entity_types"]:
            return [v[i] for i in keep]
        return v

    out = {k: sub(v) for k, v in case.items() if k != "entities"}
    out["entities"] = {k: [v[i] for i in keep] for k, v in case["entities"].items()}
    return out, drop


def max_logit_diff(model, case: dict) -> float:
    """Max |ours - gliner| over valid (span, class) logits of a case."""
    worst = 0.0
    gl, valid = case["logits"], case["valid"]
    for i, (words, prompts) in enumerate(zip(case["words"], prompts_per_row(case))):
        ours = model.dense_logits([words], prompts)[0]  # span (W, K, C) or token (W, C, 3)
        w, a, c = ours.shape
        ref = gl[i, :w, :a, :c]
        v = valid[i, :w, :a, :c]
        assert int(valid[i].sum()) == int(v.sum()), "golden has valid entries outside our shape"
        if v.any():
            worst = max(worst, float((ours[v] - ref[v]).abs().max()))
    return worst


def compare_entities(ours: list, ref: list, tol: float = 1e-5) -> str | None:
    """None when identical (start, end, text, label) and scores within tol; else a description."""
    if len(ours) != len(ref):
        return f"{len(ours)} texts vs {len(ref)}"
    for i, (a, b) in enumerate(zip(ours, ref)):
        ka = [(e["start"], e["end"], e["text"], e["label"]) for e in a]
        kb = [(e["start"], e["end"], e["text"], e["label"]) for e in b]
        if ka != kb:
            return f"text {i}: {ka} != {kb}"
        for e, f in zip(a, b):
            if abs(e["score"] - f["score"]) > tol:
                return f"text {i}: score {e['score']} vs {f['score']}"
    return None
