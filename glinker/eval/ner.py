"""Span-level NER scoring that reproduces GLiNER's own evaluation, from a model callable or saved predictions.

GLiNER's convention (``gliner/evaluation/evaluate.py`` + ``evaluator.py``), which :func:`score_example`
follows in its default ``"gliner"`` mode:
- the sentence is split on whitespace; gold char offsets are turned into word indices assuming the words
  are joined by single spaces; an offset that is not a word boundary gives ``None``, so such a gold entity
  can never be matched (it stays a false negative);
- entity types and the prompted labels are lower-cased, so type matching is case-insensitive (glinker also
  cleans them as training does, ``label_key``: NFKC, invisible characters dropped, whitespace collapsed, so
  ``" Location "`` and ``location`` are one type; GLiNER's benchmark files are already clean);
- per sentence, gold and predicted ``(start_word, end_word, type)`` are *sets* (duplicates count once);
- micro precision/recall/F1 over all sentences of a dataset; the benchmark figure is the plain mean of the
  per-dataset micro-F1.
On the real eval files every sentence is exactly ``" ".join(sentence.split())``, so a word span and a char
span are the same thing: char-level exact match (span + type) with unaligned gold kept unmatchable is
equivalent. Predictions whose ends are not whitespace-word boundaries (possible when a model splits words
itself) cannot match anything and are counted in ``unaligned_pred``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glinker.errors import DataError
from glinker.io import open_output
from glinker.model.train.batching import clean_label, label_key
from glinker.eval.datasets import (
    NERDataset,
    NERExample,
    gliner_word_span,
    load_ner_datasets,
)

log = logging.getLogger(__name__)

PredictFn = Callable[[list[str], list[str]], list[list[dict]]]
"""``predict(texts, labels) -> [[{"start", "end", "label", ...}, ...], ...]`` (char offsets, end exclusive)."""

ZERO_SHOT_BENCHMARK = ("CrossNER_AI", "CrossNER_literature", "CrossNER_music", "CrossNER_politics",
                       "CrossNER_science", "mit-movie", "mit-restaurant")
"""The seven sets whose mean micro-F1 is the published zero-shot figure (GLiNER papers, arXiv 2602.18487)."""


@dataclass
class PRF:
    """True positives, false positives and false negatives, with micro precision/recall/F1."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def add(self, other: PRF) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn

    def as_dict(self) -> dict[str, float]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "precision": self.precision,
                "recall": self.recall, "f1": self.f1}


@dataclass
class NERResult:
    """Scores of one dataset plus counts that explain them."""

    name: str
    scores: PRF = field(default_factory=PRF)
    sentences: int = 0
    # every gold count is of distinct gold keys per sentence ((span, type) sets, as GLiNER counts), so the notes
    # are parts of the ``gold`` column
    gold: int = 0  # distinct gold keys (GLiNER counts sets)
    predicted: int = 0  # distinct predicted keys
    unaligned_gold: int = 0  # gold keys not on word boundaries: unmatchable, as in GLiNER
    unaligned_pred: int = 0  # predicted keys not on whitespace-word boundaries
    gold_types_not_prompted: int = 0  # gold keys whose type is not among the prompted labels: unmatchable
    sentences_in_set: int | None = None  # sentences the set holds (under --limit: the first N), when known

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.scores.as_dict(), "sentences": self.sentences, "gold": self.gold,
                "predicted": self.predicted, "unaligned_gold": self.unaligned_gold,
                "unaligned_pred": self.unaligned_pred, "gold_types_not_prompted": self.gold_types_not_prompted,
                "sentences_in_set": self.sentences_in_set}


NOT_COMPARABLE = "not comparable to published figures"


@dataclass
class NERReport:
    """Per-dataset results; ``avg_micro_f1`` is the mean of the datasets' micro-F1 (every set run).

    ``limit``: the ``--limit`` the sentences were picked with (the first N of each set); ``run``: what was
    evaluated (model, threshold, data, ...), printed as the table's header and kept in :meth:`as_dict`.
    """

    results: list[NERResult]
    limit: int | None = None
    run: dict[str, Any] = field(default_factory=dict)

    @property
    def avg_micro_f1(self) -> float:
        return sum(r.scores.f1 for r in self.results) / len(self.results) if self.results else 0.0

    @property
    def zero_shot_avg(self) -> float | None:
        """Mean micro-F1 over the seven zero-shot sets, when all seven were evaluated."""
        by = {r.name: r.scores.f1 for r in self.results}
        if all(n in by for n in ZERO_SHOT_BENCHMARK):
            return sum(by[n] for n in ZERO_SHOT_BENCHMARK) / len(ZERO_SHOT_BENCHMARK)
        return None

    @property
    def subsample(self) -> str | None:
        """Why the averages are not over whole sets (``--limit``, or predictions covering part of a set), or None."""
        if self.limit is not None:
            return f"on --limit {self.limit} sentences per set"
        part = [r for r in self.results if r.sentences_in_set is not None and r.sentences < r.sentences_in_set]
        if part:
            n = sum(r.sentences for r in self.results)
            total = sum(r.sentences_in_set if r.sentences_in_set is not None else r.sentences for r in self.results)
            return f"on {n} of the {total} sentences (those with predictions)"
        return None

    def header(self) -> list[str]:
        """What was evaluated: model, threshold, data (empty without ``run``)."""
        r = self.run
        if not r:
            return []
        lines = []
        if r.get("predictions") is not None:
            lines.append(f"predictions: {r['predictions']} (saved: the model and threshold of the run that made them)")
        else:
            lines.append(f"model: {r.get('model')}  threshold: {r.get('threshold')}")
        extra = [f"{k}: {r[k]}" for k in ("split", "mode") if r.get(k) is not None]
        if self.limit is not None:
            extra.append(f"limit: first {self.limit} sentences per set")
        lines.append(f"data: {r.get('data')}" + ("  (" + ", ".join(extra) + ")" if extra else ""))
        return lines

    def table(self) -> str:
        """The header (when ``run`` is set), a fixed-width table (percentages), one row per dataset, then the
        average rows, each saying what it averages."""
        head = f"{'dataset':<22}{'sents':>7}{'gold':>7}{'pred':>7}{'P':>8}{'R':>8}{'F1':>8}  notes"
        lines = [*self.header(), head, "-" * len(head)]
        for r in self.results:
            notes = []
            if r.unaligned_gold:
                notes.append(f"{r.unaligned_gold} gold off word boundaries"
                             + (" (natural text? --mode char)" if r.unaligned_gold * 10 >= max(1, r.gold) else ""))
            if r.gold_types_not_prompted:
                notes.append(f"{r.gold_types_not_prompted} gold types not in labels")
            if r.unaligned_pred:
                notes.append(f"{r.unaligned_pred} pred off word boundaries")
            s = r.scores
            lines.append(f"{r.name:<22}{r.sentences:>7}{r.gold:>7}{r.predicted:>7}{s.precision:>8.1%}"
                         f"{s.recall:>8.1%}{s.f1:>8.1%}  {'; '.join(notes)}")
        lines.append("-" * len(head))
        sub = self.subsample
        mark = f"  ({sub}: {NOT_COMPARABLE})" if sub else ""
        zs = self.zero_shot_avg
        if zs is not None:
            lines.append(f"{'zero-shot avg: the 7 published sets':<50}{zs:>8.1%}{mark}")
        n = len(self.results)
        label = f"average of the {n} set{'s' if n != 1 else ''} run (the last line)"
        lines.append(f"{label:<50}{self.avg_micro_f1:>8.1%}{mark}")
        return "\n".join(lines)

    def last_line(self) -> str:
        """``avg_micro_f1=<x>`` (every set run), then ``zero_shot_avg=<y>`` when the seven published sets were run
        (the figure papers quote)."""
        zs = self.zero_shot_avg
        return f"avg_micro_f1={self.avg_micro_f1:.4f}" + (f" zero_shot_avg={zs:.4f}" if zs is not None else "")

    def as_dict(self) -> dict[str, Any]:
        return {"run": dict(self.run), "limit": self.limit, "subsample": self.subsample,
                "datasets": [r.as_dict() for r in self.results], "avg_micro_f1": self.avg_micro_f1,
                "zero_shot_avg": self.zero_shot_avg}


_NONSPACE = re.compile(r"\S+")


def score_example(example: NERExample, predicted: Iterable[dict], mode: str = "gliner",
                  labels: Sequence[str] | None = None, result: NERResult | None = None) -> PRF:
    """Score one sentence: set-based exact match of span and (lower-cased) type.

    ``mode="gliner"`` matches on whitespace-word spans as GLiNER does; ``mode="char"`` on raw char offsets
    (for texts that are not pre-tokenized). ``result`` (optional) accumulates the diagnostic counts.
    """
    if mode not in ("gliner", "char"):
        raise DataError(f"unknown scoring mode {mode!r}", where="mode", fix="use 'gliner' or 'char'")
    text = example.text
    prompted = {label_key(x) for x in labels} if labels is not None else None
    gold: set[tuple] = set()
    pred: set[tuple] = set()
    if mode == "gliner":
        words = text.split()
        starts, ends = {}, {}
        for i, m in enumerate(_NONSPACE.finditer(text)):
            starts[m.start()] = i
            ends[m.end()] = i
        for g in example.spans:
            s, e = gliner_word_span(words, g.start, g.end)
            gold.add((s, e, label_key(g.label)))
        for p in predicted:
            a, b = _span_of(p, example)
            s, e = starts.get(a), ends.get(b)
            if s is None or e is None:
                pred.add(("unaligned", a, b, label_key(str(p.get("label", "")))))
            else:
                pred.add((s, e, label_key(str(p.get("label", "")))))
    else:
        gold = {(g.start, g.end, label_key(g.label)) for g in example.spans}
        for p in predicted:
            a, b = _span_of(p, example)
            pred.add((a, b, label_key(str(p.get("label", "")))))
    tp = len(gold & pred)
    out = PRF(tp=tp, fp=len(pred) - tp, fn=len(gold) - tp)
    if result is not None:
        result.scores.add(out)
        result.sentences += 1
        result.gold += len(gold)
        result.predicted += len(pred)
        if mode == "gliner":  # counted over the distinct keys, as the gold and pred columns are
            result.unaligned_gold += sum(1 for k in gold if k[0] is None or k[1] is None)
            result.unaligned_pred += sum(1 for k in pred if k[0] == "unaligned")
        if prompted is not None:
            result.gold_types_not_prompted += sum(1 for k in gold if k[-1] not in prompted)
    return out


def _span_of(p: Any, example: NERExample) -> tuple[int, int]:
    try:
        a, b = int(p["start"]), int(p["end"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"prediction {str(p)[:80]} has no integer start/end", where=example.where or f"example {example.id}",
                        fix='predictions are dicts {"start": int, "end": int, "label": str} (char offsets)') from None
    if not 0 <= a < b <= len(example.text):
        raise DataError(f"prediction {str(p)[:80]} is not a span of the text ({len(example.text)} characters)",
                        where=example.where or f"example {example.id}",
                        fix="predictions give character offsets into the text: 0 <= start < end <= its length")
    return a, b


def score_dataset(dataset: NERDataset, predictions: Sequence[Sequence[dict]], mode: str = "gliner") -> NERResult:
    """Score a whole dataset given one prediction list per example (same order)."""
    if len(predictions) != len(dataset.examples):
        raise DataError(f"{len(predictions)} prediction lists for {len(dataset.examples)} sentences",
                        where=dataset.name, fix="give exactly one (possibly empty) list per sentence, in order")
    res = NERResult(name=dataset.name, sentences_in_set=len(dataset.examples))
    for ex, preds in zip(dataset.examples, predictions):
        score_example(ex, preds, mode=mode, labels=example_labels(dataset, ex), result=res)
    return res


def prompt_labels(dataset: NERDataset) -> list[str]:
    """The labels to prompt a dataset's sentences with when they have no list of their own (:func:`prompt_form`)."""
    return prompt_form(dataset.labels)


def prompt_form(labels: Iterable[str]) -> list[str]:
    """Labels as a sentence is prompted with them: cleaned and lower-cased, each type once, blank names dropped."""
    return list(dict.fromkeys(k for k in (clean_label(x).lower() for x in labels) if k))


def example_labels(dataset: NERDataset, example: NERExample) -> list[str]:
    """The labels one sentence is prompted with: its record's own list when it has one (annotated data with a
    GLiNER ``label`` list or Pile-NER asked types), else the dataset's (``labels.json`` or every type the data
    names)."""
    return list(example.labels) if example.labels is not None else list(dataset.labels)


def predict_dataset(predict: PredictFn, dataset: NERDataset, chunk: int = 256,
                    progress: Callable[[int], None] | None = None) -> list[list[dict]]:
    """Run ``predict`` over a dataset's sentences, ``chunk`` texts per call; returns one list per sentence.

    Sentences are prompted with :func:`example_labels`, lower-cased: one call per chunk of the sentences that
    share a label list (every sentence, for the benchmark folders).
    """
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, ex in enumerate(dataset.examples):
        groups.setdefault(tuple(prompt_form(example_labels(dataset, ex))), []).append(i)
    out: list[list[dict] | None] = [None] * len(dataset.examples)
    for labels, idx in groups.items():
        if not labels:  # a sentence asked about no type (a record's empty ``label`` list): nothing to predict
            continue
        for i in range(0, len(idx), chunk):
            part = idx[i:i + chunk]
            res = predict([dataset.examples[j].text for j in part], list(labels))
            if len(res) != len(part):
                raise DataError(f"predict returned {len(res)} results for {len(part)} texts", where=dataset.name,
                                fix="the predict callable must return one list of entities per input text")
            for j, r in zip(part, res):
                out[j] = [dict(e) for e in r]
            if progress is not None:
                progress(len(part))
    return [r if r is not None else [] for r in out]


def evaluate_ner(predict: PredictFn, datasets: Iterable[NERDataset], mode: str = "gliner",
                 save_predictions: str | Path | None = None,
                 progress: Callable[[int], None] | None = None, limit: int | None = None) -> NERReport:
    """Predict and score every dataset; optionally save predictions as JSONL for :func:`score_predictions_file`.

    ``limit`` only labels the report (the datasets were read with it: their first N sentences).
    """
    import contextlib

    results = []
    with contextlib.ExitStack() as stack:
        f = stack.enter_context(open_output(save_predictions, "w", "--save-predictions")) if save_predictions else None
        for ds in datasets:
            preds = predict_dataset(predict, ds, progress=progress)
            if f is not None:
                _write_predictions(f, ds, preds)
            r = score_dataset(ds, preds, mode=mode)
            log.info("%s: P=%.4f R=%.4f F1=%.4f", ds.name, r.scores.precision, r.scores.recall, r.scores.f1)
            results.append(r)
    return NERReport(results, limit=limit)


def sweep_thresholds(predict: PredictFn, datasets: Sequence[NERDataset], thresholds: Sequence[float],
                     mode: str = "gliner", progress: Callable[[int], None] | None = None) -> dict[float, NERReport]:
    """One report per threshold from a single prediction pass at the lowest one.

    ``predict`` must already apply the lowest threshold. Greedy decoding takes candidates best score first, so
    the ones at or below a higher threshold come after every one above it and never block them: keeping the
    predictions with ``score > t`` is exactly what a run at ``t`` returns (flat, nested and multi-label alike).
    """
    preds = [predict_dataset(predict, ds, progress=progress) for ds in datasets]
    out: dict[float, NERReport] = {}
    for t in sorted(thresholds):
        out[t] = NERReport([score_dataset(ds, [[e for e in p if e["score"] > t] for p in pr], mode=mode)
                            for ds, pr in zip(datasets, preds)])
    return out


def _write_predictions(f: Any, ds: NERDataset, preds: Sequence[Sequence[dict]]) -> None:
    from glinker.io import json_line

    for i, (ex, ents) in enumerate(zip(ds.examples, preds)):
        rec = {"dataset": ds.name, "index": i, "text": ex.text,
               "entities": [{k: v for k, v in e.items() if k in ("start", "end", "label", "score", "text")}
                            for e in ents]}
        f.write(json_line(rec) + "\n")
    f.flush()


def write_predictions(path: str | Path, dataset: NERDataset, predictions: Sequence[Sequence[dict]],
                      append: bool = True) -> None:
    """Save predictions as JSONL: ``{"dataset", "index", "text", "entities": [{start, end, label, score}]}``."""
    with open_output(path, "a" if append else "w", "predictions") as f:
        _write_predictions(f, dataset, predictions)


def _prediction_line(rec: Any, where: str) -> tuple[str, int, str, list[dict]]:
    """(dataset, index, text, entities) of a line written by ``--save-predictions``, each of its type (a whole index
    from 0, entities with whole-number start and end and a string label); a DataError naming the line otherwise
    (a null dataset, a negative or fractional index or a label that is no string was scored wrong without a word,
    or failed in the report with a bare TypeError)."""
    fix = 'write lines as {"dataset": "...", "index": 0, "text": "...", "entities": [{"start", "end", "label"}]}'
    try:
        name, idx, text, ents = rec["dataset"], rec["index"], rec["text"], rec["entities"]
    except (KeyError, TypeError):
        raise DataError("prediction line needs dataset, index, text and entities", where=where, fix=fix) from None
    if not isinstance(name, str) or not name:
        raise DataError(f"dataset is {json.dumps(name)[:40]}, not a set's name", where=where, fix=fix)
    if isinstance(idx, bool) or not isinstance(idx, int) or idx < 0:
        raise DataError(f"index is {json.dumps(idx)[:40]}, not a sentence number (a whole number from 0)",
                        where=where, fix=fix)
    if not isinstance(text, str) or not isinstance(ents, list):
        raise DataError("text must be a string and entities a list", where=where, fix=fix)
    for k, e in enumerate(ents):
        ok = isinstance(e, dict) and all(isinstance(e.get(f), int) and not isinstance(e.get(f), bool)
                                         for f in ("start", "end")) and isinstance(e.get("label"), str)
        if not ok:
            raise DataError(f"entities[{k}] is {json.dumps(e, default=str)[:80]}: an entity is "
                            '{"start": int, "end": int, "label": str}', where=where, fix=fix)
    return name, idx, text, ents


def score_predictions_file(path: str | Path, data: str | Path, mode: str = "gliner", split: str = "test",
                           limit: int | None = None) -> NERReport:
    """Score saved predictions against the gold data under ``data`` (a dataset folder or a folder of them).

    Only the sentences that have a prediction line are scored (a run with ``--limit`` saved the first N);
    a line whose text differs from the gold sentence is an error. ``limit`` scores only the first N sentences
    of each set, as a run with ``--limit N`` picks them: lines for later sentences are left out.
    """
    p = Path(path)
    from glinker.eval.datasets import iter_json_records

    by_ds: dict[str, dict[int, tuple[str, list[dict], int]]] = {}
    for rec, line in iter_json_records(p):
        name, idx, text, ents = _prediction_line(rec, f"{p}:{line}")
        seen = by_ds.setdefault(name, {})
        if idx in seen:  # two predictions for one sentence: the last would win silently
            raise DataError(f"sentence {idx} of {name} has a second prediction line (the first: line {seen[idx][2]})",
                            where=f"{p}:{line}", fix="keep one line per sentence (a file appended to twice?)")
        seen[idx] = (text, ents, line)
    if not by_ds:  # it would score 0 and read as a result
        raise DataError("no prediction lines", where=str(p),
                        fix="point --predictions at a file written by --save-predictions")
    sets = {d.name: d for d in load_ner_datasets(data, split=split, limit=limit)}
    results = []
    if len(by_ds) == 1 and len(sets) == 1 and next(iter(by_ds)) not in sets:
        # one set both ways, named differently (saved with --data FOLDER/test.txt, scored with --data FOLDER): the
        # same set when its texts match, which every line is checked for below
        only = next(iter(sets.values()))
        sets = {next(iter(by_ds)): only}
    for name, rows in by_ds.items():
        if name not in sets:
            raise DataError(f"dataset {name!r} of the predictions is not under {data}", where=str(p),
                            fix=f"point --data at the folder holding {name}/ (found: {', '.join(sorted(sets))})")
        ds = sets[name]
        res = NERResult(name=name, sentences_in_set=len(ds.examples))
        for idx in sorted(rows):
            text, ents, line = rows[idx]
            if limit is not None and idx >= limit:
                continue  # past the first N sentences --limit keeps (checked against the gold below otherwise)
            if idx >= len(ds.examples) or ds.examples[idx].text != text:
                raise DataError(f"prediction for sentence {idx} of {name} does not match the gold text",
                                where=f"{p}:{line}", fix="score predictions against the data they were made on")
            score_example(ds.examples[idx], ents, mode=mode, labels=example_labels(ds, ds.examples[idx]), result=res)
        if not res.sentences:  # it would score 0 and pull the average down
            raise DataError(f"none of the prediction lines of {name} is for its first {limit} sentences",
                            where=str(p), fix="raise --limit, or drop it to score every saved sentence")
        if res.sentences < len(ds.examples):
            log.warning("%s: %d of %d sentences have predictions; scoring those only", name, res.sentences,
                        len(ds.examples))
        results.append(res)
    left = sorted(set(sets) - set(by_ds))
    if left:  # the average is over the sets that have predictions: say which sets it leaves out
        log.warning("%d of the %d sets under %s have no prediction lines in %s, and are not in the average: %s%s",
                    len(left), len(sets), data, p, ", ".join(left[:8]), ", ..." if len(left) > 8 else "")
    return NERReport(results, limit=limit)
