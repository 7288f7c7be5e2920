"""NER scoring: GLiNER's convention reproduced exactly, from a callable or from saved predictions."""

from __future__ import annotations

import json
import random
from collections import defaultdict

import pytest

from glinker.errors import DataError
from glinker.eval.datasets import GoldSpan, NERDataset, NERExample, find_ner_datasets, read_ner_dataset
from glinker.eval.ner import (
    PRF,
    NERReport,
    NERResult,
    evaluate_ner,
    score_dataset,
    score_example,
    score_predictions_file,
    write_predictions,
)


def gliner_reference_f1(examples, preds):
    """GLiNER's evaluation, transcribed: process() on gold, word spans for predictions, set-based micro PRF."""
    all_true, all_pred = [], []
    for i, (ex, ps) in enumerate(zip(examples, preds)):
        words = ex.text.split()
        for g in ex.spans:
            s = e = None
            c = 0
            for j, w in enumerate(words):
                if c == g.start:
                    s = j
                if c + len(w) == g.end:
                    e = j
                    break
                c += len(w) + 1
            all_true.append((g.label.lower(), (s, e), i))
        offs, c = [], 0
        for w in words:
            offs.append((c, c + len(w)))
            c += len(w) + 1
        for p in ps:  # a predicted char span maps to words only on word boundaries (else it cannot exist there)
            st = [j for j, (a, _) in enumerate(offs) if a == p["start"]]
            en = [j for j, (_, b) in enumerate(offs) if b == p["end"]]
            key = (st[0], en[0]) if st and en else ("x", p["start"], p["end"])
            all_pred.append((p["label"].lower(), key, i))
    t, pr = defaultdict(set), defaultdict(set)
    for lab, sp, i in all_true:
        t[lab].add((sp, i))
    for lab, sp, i in all_pred:
        pr[lab].add((sp, i))
    tp = sum(len(t[k] & pr[k]) for k in set(t) | set(pr))
    n_pred = sum(len(v) for v in pr.values())
    n_true = sum(len(v) for v in t.values())
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_true if n_true else 0.0
    return (2 * p * r / (p + r) if p + r else 0.0), tp, n_pred, n_true


def ex(text, *spans):
    return NERExample(text=text, spans=[GoldSpan(a, b, lab, text[a:b]) for a, b, lab in spans])


def test_prf_math():
    s = PRF(tp=3, fp=1, fn=2)
    assert s.precision == 0.75 and s.recall == 0.6 and abs(s.f1 - 2 * 0.75 * 0.6 / 1.35) < 1e-12
    assert PRF().f1 == 0.0 and PRF(fp=3).precision == 0.0


def test_exact_span_and_type_case_insensitive():
    e = ex("Ada Lovelace met Charles Babbage .", (0, 12, "Person"), (17, 32, "person"))
    r = NERResult("x")
    out = score_example(e, [{"start": 0, "end": 12, "label": "person"},      # TP (case-insensitive type)
                            {"start": 17, "end": 24, "label": "person"},     # wrong span
                            {"start": 17, "end": 32, "label": "location"}],  # wrong type
                        result=r)
    assert (out.tp, out.fp, out.fn) == (1, 2, 1)


def test_unaligned_gold_is_unmatchable_and_collides_like_gliner():
    # "r" at [1, 2] is inside "are" (a real mit-movie annotation error): GLiNER maps it to (None, None)
    e = ex("are there any r movies", (1, 2, "rating"), (14, 15, "rating"))
    r = NERResult("x")
    out = score_example(e, [{"start": 14, "end": 15, "label": "rating"}, {"start": 1, "end": 2, "label": "rating"}],
                        result=r)
    assert (out.tp, out.fp, out.fn) == (1, 1, 1)
    assert r.unaligned_gold == 1 and r.unaligned_pred == 1
    # two unaligned gold of one type in one sentence are the same (None, None) key in GLiNER's sets
    e2 = ex("are there any r movies", (1, 2, "rating"), (7, 8, "rating"))
    assert score_example(e2, []).fn == 1
    assert score_example(e2, [], mode="char").fn == 2


def test_duplicates_count_once():
    e = ex("Paris is nice", (0, 5, "city"), (0, 5, "city"))
    out = score_example(e, [{"start": 0, "end": 5, "label": "city"}] * 3)
    assert (out.tp, out.fp, out.fn) == (1, 0, 0)


def test_char_mode_for_untokenized_text():
    e = ex("Paris, France.", (0, 5, "city"), (7, 13, "country"))
    preds = [{"start": 0, "end": 5, "label": "city"}, {"start": 7, "end": 13, "label": "country"}]
    assert score_example(e, preds, mode="char").f1 == 1.0
    assert score_example(e, preds, mode="gliner").tp == 0  # "Paris," is one whitespace word
    with pytest.raises(DataError):
        score_example(e, [{"end": 3}])


def test_evaluate_with_callable_and_saved_predictions(tmp_path):
    folder = tmp_path / "data" / "tiny"
    folder.mkdir(parents=True)
    recs = [{"sentence": "Ada Lovelace met Charles Babbage .",
             "entities": [{"name": "Ada Lovelace", "type": "Person", "pos": [0, 12]},
                          {"name": "Charles Babbage", "type": "Person", "pos": [17, 32]}]},
            {"sentence": "London is big .", "entities": [{"name": "London", "type": "Location", "pos": [0, 6]}]}]
    (folder / "test.json").write_text(json.dumps(recs))
    (folder / "labels.json").write_text(json.dumps(["Person", "Location"]))
    calls = []

    def predict(texts, labels):
        calls.append((list(texts), list(labels)))
        out = []
        for t in texts:
            out.append([{"start": 0, "end": 12, "label": "person", "score": 0.9}] if t.startswith("Ada") else
                       [{"start": 0, "end": 6, "label": "person", "score": 0.6}])
        return out

    ds = read_ner_dataset(folder)
    saved = tmp_path / "pred.jsonl"
    report = evaluate_ner(predict, [ds], save_predictions=saved)
    assert calls[0][1] == ["person", "location"]  # prompted lower-cased, as GLiNER does
    (r,) = report.results
    assert (r.scores.tp, r.scores.fp, r.scores.fn) == (1, 1, 2)
    assert report.last_line() == f"avg_micro_f1={r.scores.f1:.4f}"
    again = score_predictions_file(saved, tmp_path / "data")
    assert again.results[0].scores == r.scores
    # a prediction file made on other text is refused
    bad = tmp_path / "bad.jsonl"
    bad.write_text(saved.read_text().replace("London", "Paris"))
    with pytest.raises(DataError, match="does not match"):
        score_predictions_file(bad, tmp_path / "data")
    twice = tmp_path / "twice.jsonl"  # a file appended to twice: refused, not last-line-wins
    twice.write_text(saved.read_text() + saved.read_text().splitlines(keepends=True)[0])
    with pytest.raises(DataError, match="second prediction line"):
        score_predictions_file(twice, tmp_path / "data")
    past = tmp_path / "past.jsonl"  # offsets past the text are no span of it
    past.write_text(saved.read_text().replace('"end": 6', '"end": 999'))
    with pytest.raises(DataError, match="not a span of the text"):
        score_predictions_file(past, tmp_path / "data")
    with pytest.raises(DataError, match="prediction lists"):
        score_dataset(ds, [[]])
    with pytest.raises(DataError, match="results for"):
        evaluate_ner(lambda t, l: [], [ds])


def test_report_average_and_zero_shot():
    names = ["CrossNER_AI", "CrossNER_literature", "CrossNER_music", "CrossNER_politics", "CrossNER_science",
             "mit-movie", "mit-restaurant"]
    rs = [NERResult(n, PRF(tp=1, fp=0, fn=1)) for n in names] + [NERResult("conll2003", PRF(tp=1))]
    rep = NERReport(rs)
    assert rep.zero_shot_avg == pytest.approx(2 / 3)
    assert rep.avg_micro_f1 == pytest.approx((7 * 2 / 3 + 1) / 8)
    assert "zero-shot avg" in rep.table() and rep.last_line() == "avg_micro_f1=0.7083 zero_shot_avg=0.6667"
    assert NERReport(rs[1:]).last_line() == "avg_micro_f1=0.7143"  # six of the seven: no zero-shot mean


@pytest.mark.shared_data
def test_matches_gliner_reference_on_real_data(data, tmp_path):
    """Perturbed gold as predictions: our score equals the transcribed GLiNER evaluation on every set."""
    rng = random.Random(0)
    folders = find_ner_datasets(data / "ner" / "eval")
    for f in folders:
        ds = read_ner_dataset(f, limit=400)
        preds = []
        for e in ds.examples:
            ps = []
            for g in e.spans:
                roll = rng.random()
                if roll < 0.15:
                    continue  # missed
                if roll < 0.25:
                    ps.append({"start": g.start, "end": g.end, "label": rng.choice(ds.labels)})  # maybe wrong type
                elif roll < 0.3:
                    ps.append({"start": g.start, "end": max(g.start + 1, g.end - 1), "label": g.label})  # off boundary
                else:
                    ps.append({"start": g.start, "end": g.end, "label": g.label.upper()})
            words = e.text.split()
            if words and rng.random() < 0.3:  # a spurious one-word prediction
                j = rng.randrange(len(words))
                a = len(" ".join(words[:j])) + (1 if j else 0)
                ps.append({"start": a, "end": a + len(words[j]), "label": rng.choice(ds.labels)})
            preds.append(ps)
        r = score_dataset(ds, preds)
        f1, tp, n_pred, n_true = gliner_reference_f1(ds.examples, preds)
        assert (r.scores.tp, r.predicted, r.gold) == (tp, n_pred, n_true), ds.name
        assert r.scores.f1 == pytest.approx(f1), ds.name


@pytest.mark.shared_data
def test_oracle_on_real_sets_is_bounded_by_unaligned_gold(data):
    """Gold as predictions scores below 1 exactly where gold offsets are off word boundaries (mit-movie)."""
    f = data / "ner" / "eval" / "mit-movie"
    if not f.is_dir():
        pytest.skip("no mit-movie")
    ds = read_ner_dataset(f)
    preds = [[{"start": g.start, "end": g.end, "label": g.label} for g in e.spans] for e in ds.examples]
    r = score_dataset(ds, preds)
    assert r.scores.fp == r.unaligned_pred and r.unaligned_gold == 95
    assert r.scores.precision < 1.0 and r.scores.fn > 0
    ai = score_dataset(read_ner_dataset(data / "ner" / "eval" / "CrossNER_AI"),
                       [[{"start": g.start, "end": g.end, "label": g.label} for g in e.spans]
                        for e in read_ner_dataset(data / "ner" / "eval" / "CrossNER_AI").examples])
    assert ai.scores.f1 == 1.0


def test_write_predictions_appends(tmp_path):
    ds = NERDataset("d", ["x"], [ex("a b", (0, 1, "x"))])
    p = tmp_path / "p.jsonl"
    write_predictions(p, ds, [[{"start": 0, "end": 1, "label": "x", "extra": 1}]])
    write_predictions(p, ds, [[]])
    lines = [json.loads(x) for x in p.read_text().splitlines()]
    assert len(lines) == 2 and lines[0]["entities"] == [{"start": 0, "end": 1, "label": "x"}]
