"""Readers for the NER and entity-linking data formats glinker evaluates and trains on.

Every reader streams records where the format allows (JSONL, CoNLL-like files, and JSON arrays through an
incremental decoder) and raises :class:`glinker.errors.DataError` naming ``file:line`` and the fix on
malformed input.

Formats
- GLiNER/UniNER eval JSON: ``[{"sentence", "entities": [{"name", "type", "pos": [cs, ce]}]}]`` plus
  ``labels.json`` -> :class:`NERExample` (gold character spans).
- GLiNER training JSON (array or JSONL): ``{"tokenized_text": [...], "ner": [[s, e_inclusive, type]]}``,
  the eval JSON used as training data, CoNLL-like BIO (``idx\\ttoken\\tTAG``), and Pile-NER QA-style
  samples -> :class:`TrainingExample` (tokens + word-level spans, end inclusive, as GLiNER stores them).
- AIDA JSONL and ELEVANT JSONL -> :class:`ELDocument` with :class:`GoldMention` (entity id or NIL).
"""

from __future__ import annotations

import bisect
import dataclasses
import difflib
import json
import logging
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glinker.errors import DataError
from glinker.io import not_utf8

log = logging.getLogger(__name__)

NIL = "NIL"  # same value as glinker.types.NIL; repeated so readers stay importable without pydantic

_CHUNK = 1 << 20
_WS = " \t\r\n"

# ------------------------------------------------------------------------------------------------------------
# low-level JSON streaming


def _line_of(buf: str, pos: int, base_line: int) -> int:
    return base_line + buf.count("\n", 0, pos)


def iter_json_records_at(p: Path) -> Iterator[tuple[int, Any, int, str]]:
    """``(i, record, line, where)`` for :func:`iter_json_records`: ``where`` is ``FILE:LINE``, with the record's number
    when an earlier record began on the same line (a JSON array written on one line, as the shared training sets
    are: "line 1" alone says nothing)."""
    on_line: dict[int, int] = {}
    for i, (rec, line) in enumerate(iter_json_records(p)):
        on_line[line] = on_line.get(line, 0) + 1
        yield i, rec, line, f"{p}:{line}" if on_line[line] == 1 else f"{p}:{line} (record {i})"


def iter_json_records(path: str | Path) -> Iterator[tuple[Any, int]]:
    """Yield ``(record, line)`` from a JSON array file or a JSONL file, without loading the whole file.

    The first non-blank character decides: ``[`` is a JSON array (decoded element by element), anything
    else is JSONL (one value per non-blank line).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"file not found: {p}", where=str(p), fix="check the path (and GLINKER_DATA)")
    _refuse_wide(p)
    try:
        with p.open("r", encoding="utf-8-sig") as f:  # a byte-order mark is not JSON
            head = ""
            while True:
                chunk = f.read(4096)
                head += chunk
                if not chunk or head.strip():
                    break
            f.seek(0)
            if head.lstrip().startswith("["):
                yield from _iter_json_array(f, p)
            else:
                yield from _iter_jsonl(f, p)
    except UnicodeDecodeError:
        raise not_utf8(p) from None


def _iter_jsonl(f: Any, p: Path) -> Iterator[tuple[Any, int]]:
    for n, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            yield json.loads(line), n
        except json.JSONDecodeError as e:
            if not line.lstrip().startswith(("{", "[")):  # not a JSON record at all: a truncation does not explain it
                raise DataError(f"not JSON: line {n} is {line.strip()[:60]!r}, not a JSON object", where=f"{p}:{n}",
                                fix="a JSON Lines file holds one JSON object per line (or the file is one JSON array); "
                                    "for BIO data (one 'token<TAB>TAG' a line) check that this file is the one meant"
                                ) from None
            last = not any(rest.strip() for rest in f)
            raise DataError(f"invalid JSON: {e.msg} (column {e.colno})", where=f"{p}:{n}",
                            fix="each line must be one complete JSON object; "
                                + ("a truncated last line usually means an interrupted write: delete it" if last
                                   else "fix the record at that line (a missing comma, quote or bracket)")) from None


def _iter_json_array(f: Any, p: Path) -> Iterator[tuple[Any, int]]:
    dec = json.JSONDecoder()
    buf = ""
    pos = 0
    line = 1  # line number of buf[0]
    eof = False

    def fill() -> bool:
        nonlocal buf, pos, line, eof
        line = _line_of(buf, pos, line)
        buf = buf[pos:]
        pos = 0
        chunk = f.read(_CHUNK)
        if not chunk:
            eof = True
            return False
        buf += chunk
        return True

    def skip_ws() -> None:
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos] in _WS:
                pos += 1
            if pos < len(buf) or not fill():
                return

    skip_ws()
    if pos >= len(buf) or buf[pos] != "[":
        raise DataError("expected a JSON array", where=f"{p}:{_line_of(buf, pos, line)}",
                        fix="the file must start with '['")
    pos += 1
    first = True
    while True:
        skip_ws()
        if pos >= len(buf):
            raise DataError("unexpected end of file inside the JSON array", where=f"{p}:{_line_of(buf, pos, line)}",
                            fix="the file is truncated: restore it or close the array with ']'")
        if buf[pos] == "]":
            skip_ws_after = pos + 1
            rest = buf[skip_ws_after:] + f.read()
            if rest.strip():
                raise DataError("data after the end of the JSON array",
                                where=f"{p}:{_line_of(buf, pos, line)}", fix="remove what follows the final ']'")
            return
        if not first:
            if buf[pos] != ",":
                raise DataError(f"expected ',' or ']' between array elements, found {buf[pos]!r}",
                                where=f"{p}:{_line_of(buf, pos, line)}", fix="separate records with commas")
            pos += 1
            skip_ws()
            if pos >= len(buf):
                raise DataError("unexpected end of file after ','", where=f"{p}:{_line_of(buf, pos, line)}",
                                fix="the file is truncated: restore it or close the array with ']'")
        first = False
        while True:
            try:
                obj, end = dec.raw_decode(buf, pos)
            except json.JSONDecodeError as e:
                # an element cut by the chunk boundary decodes once more text is read
                if not eof:
                    fill()  # more text, or EOF: retry so the error position refers to the current buffer
                    continue
                raise DataError(f"invalid JSON: {e.msg}", where=f"{p}:{_line_of(buf, e.pos, line)}",
                                fix="fix the record at that line (a missing comma, quote or bracket)") from None
            # a scalar at the buffer's end may be a prefix ("12" of "123"); objects and arrays cannot
            if end == len(buf) and not isinstance(obj, (dict, list)) and not eof:
                fill()
                continue
            break
        yield obj, _line_of(buf, pos, line)
        pos = end


def _refuse_wide(p: Path) -> None:
    """UTF-16/32 text (with or without a byte-order mark) said as such: without a mark, ASCII in UTF-16 decodes as
    UTF-8 (its NUL bytes are valid), and the error was "invalid JSON: Expecting value"."""
    from glinker.io import wide_text_error

    with p.open("rb") as f:
        wide = wide_text_error(p, f.read(64))
    if wide is not None:
        raise wide


def _read_json_small(path: Path) -> Any:
    _refuse_wide(path)
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise not_utf8(path) from None
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg}", where=f"{path}:{e.lineno}", fix="fix the JSON syntax") from None


def _did_you_mean(key: str, known: Sequence[str]) -> str:
    """`` (did you mean 'ner'?)`` for a key close to one of ``known`` (difflib), else ``""``."""
    m = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean {m[0]!r}?)" if m else ""


def _check_record_keys(rec: dict, needed: str, known: Sequence[str], where: str, i: int) -> None:
    """A record without the key that holds its annotation (``needed``: ``ner``, ``entities``...) but with keys the
    format does not know is an error: a misspelt key (``nre``, ``entites``) would read as a sentence without
    entities, trained as a negative and scored as missing gold. A record that has ``needed`` may carry any other
    keys (ids, metadata), and so may one without ``needed`` whose other keys look like no annotation (``id``,
    ``source``: a sentence with no entities, as before): the error is for an unknown key close to a known one
    ("did you mean") or holding a list (annotations under another name)."""
    if needed in rec:
        return
    unknown = [k for k in rec if k not in known]
    hints = {k: _did_you_mean(str(k), known) for k in unknown}
    unknown = [k for k in unknown if hints[k] or isinstance(rec[k], list)]
    if not unknown:
        return
    hint = next((hints[k] for k in unknown if hints[k]), "")
    names = ", ".join(repr(k) for k in unknown[:5])
    raise DataError(f"record {i} has no {needed!r} but has the unknown key{'s' if len(unknown) > 1 else ''} "
                    f"{names}{hint}", where=where,
                    fix=f"rename the key to {needed!r} (the keys of this format: {', '.join(known)}); a record "
                        f"without entities says \"{needed}\": []")


# ------------------------------------------------------------------------------------------------------------
# NER evaluation data


@dataclass
class GoldSpan:
    """A gold entity: character offsets (end exclusive) into the example's text, and its type."""

    start: int
    end: int
    label: str
    text: str = ""


@dataclass
class NERExample:
    """One sentence with gold character spans.

    ``labels``: the record's own list of types to prompt it with (a GLiNER ``label``/``labels`` list, the types a
    Pile-NER passage was asked about), which then replaces the dataset's labels for this sentence; None (the
    benchmark eval files) means the dataset's labels.
    """

    text: str
    spans: list[GoldSpan]
    id: str | None = None
    where: str | None = None  # file:line of the record, for error messages
    labels: list[str] | None = None


@dataclass
class NERDataset:
    """A named evaluation set: examples plus the label names to prompt with (``labels.json``)."""

    name: str
    labels: list[str]
    examples: list[NERExample]
    path: Path | None = None

    @property
    def n_entities(self) -> int:
        return sum(len(e.spans) for e in self.examples)


ENTITY_KEYS = ("name", "type", "pos")
EVAL_RECORD_KEYS = ("sentence", "entities", "label", "labels")


def _same_name(a: str, b: str) -> bool:
    """Whether two mention strings are the same after Unicode NFC, whitespace collapse and case folding."""
    return " ".join(unicodedata.normalize("NFC", a).split()).casefold() == \
        " ".join(unicodedata.normalize("NFC", b).split()).casefold()


def _entity_span(ent: Any, text: str, where: str, j: int) -> GoldSpan:
    """An eval-JSON entity ``{"name", "type", "pos": [cs, ce]}`` as a :class:`GoldSpan`. When the entity gives its
    ``name``, ``text[cs:ce]`` must be it (compared after whitespace collapse and case folding): offsets that point
    elsewhere (counted from 1, end inclusive, bytes, another version of the text) would train and score other words.
    Every name+pos entity of ``ner/train`` and ``ner/eval`` (72,287) matches."""
    if not isinstance(ent, dict) or "pos" not in ent or "type" not in ent:
        miss = [k for k in ("pos", "type") if not isinstance(ent, dict) or k not in ent]
        hint = next((f"; {k!r}{h}" for k in (ent if isinstance(ent, dict) else ()) if k not in ENTITY_KEYS
                     for h in [_did_you_mean(str(k), miss)] if h), "")
        raise DataError(f"entity {j} needs 'pos' and 'type': {str(ent)[:80]}{hint}", where=where,
                        fix='entities are {"name": str, "type": str, "pos": [char_start, char_end]}')
    pos = ent["pos"]
    if not (isinstance(pos, (list, tuple)) and len(pos) == 2 and all(_is_index(x) for x in pos)
            and 0 <= pos[0] <= pos[1] <= len(text)):
        raise DataError(f"entity {j} has invalid pos {pos!r} (sentence has {len(text)} chars)", where=where,
                        fix="pos is [char_start, char_end) with 0 <= start <= end <= len(sentence)")
    if not isinstance(ent["type"], str):
        raise DataError(f"entity {j} has type {ent['type']!r}, which is not a string", where=where,
                        fix='write the type as a string, e.g. "type": "person"')
    if not ent["type"].strip():
        raise DataError(f"entity {j} has no type ({ent['type']!r})", where=where,
                        fix="give every entity a non-empty 'type'")
    surface = text[pos[0]:pos[1]]
    name = ent.get("name")
    if isinstance(name, str) and not _same_name(name, surface):
        raise DataError(f"entity {j} {name!r} has pos {list(pos)!r}, but the sentence there reads {surface!r}",
                        where=where,
                        fix="pos is [char_start, char_end): character offsets into 'sentence' (0-based, end exclusive, "
                            f"counted in characters, not bytes); for {name!r} e.g. "
                            + (f"[{text.find(name)}, {text.find(name) + len(name)}]" if name and name in text
                               else "fix the offsets or the name"))
    return GoldSpan(pos[0], pos[1], ent["type"], surface)


def iter_ner_eval_json(path: str | Path, record_labels: bool = True) -> Iterator[NERExample]:
    """Stream :class:`NERExample` from a GLiNER/UniNER eval JSON file (``sentence`` + ``entities``); with
    ``record_labels``, a record's own ``labels``/``label`` list is the one it is prompted with (annotated data; a
    benchmark folder prompts every sentence with its ``labels.json``). Empty gold spans are left out, with a
    warning."""
    p = Path(path)
    empty: list[str] = []
    for i, rec, line, where in iter_json_records_at(p):
        if not isinstance(rec, dict) or not isinstance(rec.get("sentence"), str):
            hint = next((h for k in rec for h in [_did_you_mean(str(k), ["sentence"])] if h), "") \
                if isinstance(rec, dict) and "sentence" not in rec else ""
            raise DataError(f"record {i} has no 'sentence' string{hint}", where=where,
                            fix='records are {"sentence": str, "entities": [...]}')
        _check_record_keys(rec, "entities", EVAL_RECORD_KEYS, where, i)
        ents = rec.get("entities", [])
        if not isinstance(ents, list):
            raise DataError(f"record {i}: 'entities' is not a list", where=where, fix="use a list of entities")
        text = rec["sentence"]
        spans = [g for j, e in enumerate(ents) for g in [_entity_span(e, text, where, j)]
                 if not _empty_span(g.start, g.end, where, f"entity {j}", empty)]
        yield NERExample(text=text, spans=spans, id=str(i), where=where,
                         labels=_record_labels(rec, where, "entities") if record_labels else None)


def read_labels(path: str | Path) -> list[str]:
    """Read a ``labels.json`` list of label names."""
    p = Path(path)
    labels = _read_json_small(p)
    if not (isinstance(labels, list) and labels and all(isinstance(x, str) and x.strip() for x in labels)):
        raise DataError("labels.json must be a non-empty list of non-blank strings", where=str(p),
                        fix='write e.g. ["person", "organization", "location"]')
    return labels


def find_ner_datasets(path: str | Path, split: str = "test") -> list[Path]:
    """Dataset folders under ``path``: ``path`` itself if it holds ``{split}.json``, else its sub-folders that do.

    Folders named ``sample_*`` are skipped, as GLiNER's evaluation does.
    """
    p = Path(path)
    f = f"{split}.json"
    if not p.is_dir():
        raise DataError(f"not a folder: {p}", where=str(p),
                        fix=f"pass a dataset folder ({f} + labels.json) or a folder of them")
    if (p / f).is_file():
        return [p]
    found = sorted(d for d in p.iterdir() if d.is_dir() and (d / f).is_file()
                   and not d.name.startswith("sample_"))
    if not found:
        raise _no_sets(p, split)
    return found


def _no_sets(p: Path, split: str) -> DataError:
    f = f"{split}.json"
    return DataError(f"no dataset folder (with {f}) in {p}", where=str(p),
                     fix="point --data at e.g. $GLINKER_DATA/ner/eval or one folder inside it"
                     + ("" if split == "test" else f", or pick a --split that exists (no {f} here)"))


def read_ner_dataset(path: str | Path, split: str = "test", limit: int | None = None) -> NERDataset:
    """Read a dataset folder: ``{split}.json`` examples and ``labels.json``; ``limit`` keeps the first N."""
    p = Path(path)
    data = p / f"{split}.json"
    labels_file = p / "labels.json"
    if not labels_file.is_file():
        raise DataError(f"no labels.json in {p}", where=str(p),
                        fix="add labels.json: the list of label names to prompt the model with")
    labels = read_labels(labels_file)
    examples: list[NERExample] = []
    for ex in iter_ner_eval_json(data, record_labels=False):
        if limit is not None and len(examples) >= limit:
            break
        examples.append(ex)
    if not examples:  # it would score 0 and pull the average down
        raise DataError(f"{data} holds no examples", where=str(data),
                        fix="fill it, or move the folder out of the data directory")
    return NERDataset(name=p.name, labels=labels, examples=examples, path=p)


def load_ner_datasets(path: str | Path, split: str = "test", limit: int | None = None) -> list[NERDataset]:
    """The evaluation sets at ``path``: GLiNER/UniNER eval folders (``{split}.json`` + ``labels.json``) or a
    folder of them; else annotated data (GLiNER/UniNER eval JSON without ``labels.json``, BIO
    ``.conll``/``.conllu``/``.txt``, GLiNER ``tokenized_text`` JSON, Pile-NER samples): a file, or a folder's
    ``split`` files, scored as one set; see :func:`read_annotated_set` for the labels it is prompted with. In a
    folder of sets every sub-folder (but hidden and ``sample_*`` ones) with data of ``split`` is read as it is read
    alone.

    A file is scored exactly as the same file inside a folder: eval JSON (``sentence`` + char ``pos``) keeps every
    record, its text and gold spans as they are (gold off word boundaries stays unmatchable, empty sentences
    count; an empty gold span is left out, with a warning), whether it is given as a file or found in a folder;
    ``limit`` keeps the first N records of each set.
    """
    p = Path(path)
    if p.is_dir():
        if (p / f"{split}.json").is_file() and (p / "labels.json").is_file():
            return [read_ner_dataset(p, split=split, limit=limit)]
        # a folder of sets: each sub-folder read as it is read alone (benchmark folders, annotated JSON without a
        # labels.json, BIO files), so no set is refused or skipped here that works given by itself; a file beside
        # them (notes, a report) does not make the folder one set. Hidden and sample_* folders are not sets.
        subs = sorted(d for d in p.iterdir() if d.is_dir() and not d.name.startswith(("sample_", ".", "__"))
                      and ((d / f"{split}.json").is_file() or training_files(d, split)))
        if subs:
            return [ds for d in subs for ds in load_ner_datasets(d, split=split, limit=limit)]
        if training_files(p, split):
            return [read_annotated_set(p, split=split, limit=limit)]
        others = [f.name for f in training_files(p)]
        if others:
            raise DataError(f"no {split} file in {p} (it holds {', '.join(others[:6])})", where=str(p),
                            fix="pick the --split its files are named for (test, dev, train...), or pass "
                                "one file as --data")
        raise _no_sets(p, split)
    if not p.is_file():
        raise DataError(f"not found: {p}", where=str(p),
                        fix="pass a dataset folder (test.json + labels.json), a folder of them, or an annotated file")
    return [read_annotated_set(p, limit=limit)]


def read_annotated_set(path: str | Path, split: str | None = None, limit: int | None = None) -> NERDataset:
    """One evaluation set from annotated data: a file, or a folder's files (of ``split`` when given).

    Labels to prompt with, per sentence: the record's own list when it has one (GLiNER ``label``/``labels``, the
    types a Pile-NER passage asked for: an explicit choice, negatives included), else the folder's
    ``labels.json``, else every type the data names (gold types and record lists, in order of appearance). Eval
    JSON records are read as the benchmark reader reads them (gold char spans untouched but empty ones, empty
    sentences kept), so a benchmark file given alone scores as its folder does: eval JSON beside a
    ``labels.json`` is prompted with it for every sentence, and takes the folder's name, as the folder would.
    """
    p = Path(path)
    files = _data_files(p, split, "data")
    folder = p if p.is_dir() else p.parent
    labels_file = folder / "labels.json"
    file_labels = read_labels(labels_file) if labels_file.is_file() else None
    examples: list[NERExample] = []
    types: dict[str, None] = {}
    eval_json = 0
    for f in files:
        if limit is not None and len(examples) >= limit:
            break
        kind = sniff_training_format(f)
        if kind == "sentence_json":
            eval_json += 1
            it: Iterator[NERExample] = iter_ner_eval_json(f, record_labels=file_labels is None)
        else:
            it = (NERExample(text=ex.text, spans=[GoldSpan(a, b, lab, ex.text[a:b]) for a, b, lab in ex.char_spans()],
                             where=f"{ex.source}:{ex.meta.get('line', '')}".rstrip(":"), labels=ex.labels)
                  for ex in map(_without_blank_tokens, _training_reader(f, kind)))
        for ex in it:
            if limit is not None and len(examples) >= limit:
                break
            for t in [*(ex.labels or []), *(g.label for g in ex.spans)]:
                types.setdefault(t, None)
            ex.id = str(len(examples))
            examples.append(ex)
    if not examples:
        raise DataError(f"{p} holds no examples", where=str(p), fix="fill it, or point --data elsewhere")
    labels = file_labels if file_labels is not None else list(types)
    if not labels:
        raise DataError(f"{p} has no entity types to prompt with", where=str(p),
                        fix="add a labels.json beside it: the list of label names")
    name = p.name if p.is_dir() else p.stem
    if p.is_file() and eval_json and file_labels is not None:
        name = folder.name  # FOLDER/test.json is the set FOLDER, as `--data FOLDER` reads it
    return NERDataset(name=name, labels=labels, examples=examples, path=p)


# ------------------------------------------------------------------------------------------------------------
# word spans <-> char spans


def gliner_word_span(words: list[str], start: int, end: int) -> tuple[int | None, int | None]:
    """GLiNER's own char->word mapping (``gliner/evaluation/evaluate.py: process``).

    It assumes the words are joined by single spaces; a boundary that is not a word boundary gives None.
    """
    s = e = None
    c = 0
    for i, w in enumerate(words):
        if c == start:
            s = i
        if c + len(w) == end:
            e = i
            break
        c += len(w) + 1
    return s, e


def word_offsets(tokens: list[str]) -> list[tuple[int, int]]:
    """Character offsets of each token in ``" ".join(tokens)``."""
    out = []
    c = 0
    for t in tokens:
        out.append((c, c + len(t)))
        c += len(t) + 1
    return out


def word_spans_to_char(tokens: list[str], spans: Iterable[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Word spans (end inclusive) to char spans (end exclusive) in ``" ".join(tokens)``."""
    offs = word_offsets(tokens)
    return [(offs[s][0], offs[e][1], lab) for s, e, lab in spans]


def char_spans_to_word(tokens: list[str], spans: Iterable[tuple[int, int, str]],
                       strict: bool = True) -> list[tuple[int, int, str]]:
    """Char spans in ``" ".join(tokens)`` to word spans (end inclusive).

    A span whose ends are not token boundaries raises DataError (``strict``) or is dropped.
    """
    offs = word_offsets(tokens)
    starts = {a: i for i, (a, _) in enumerate(offs)}
    ends = {b: i for i, (_, b) in enumerate(offs)}
    out = []
    for a, b, lab in spans:
        if a in starts and b in ends and starts[a] <= ends[b]:
            out.append((starts[a], ends[b], lab))
        elif strict:
            raise DataError(f"char span ({a}, {b}) is not on token boundaries", where=f"span {lab!r}",
                            fix="char spans must start and end where tokens joined by single spaces do")
    return out


# ------------------------------------------------------------------------------------------------------------
# training data


@dataclass
class TrainingExample:
    """Tokens with word-level spans ``(start, end_inclusive, type)``: GLiNER's training record.

    ``labels`` are the types to prompt with when the source says so (dataset label set, or the types a
    Pile-NER sample asked for, including those with no entity: useful negatives). ``ignore``: word ranges
    ``(start, end_inclusive)`` left out of the loss (likely mentions a partial annotation did not label: the spans
    inside such a range are neither positives nor negatives), from the GLiNER JSON key ``"ignore"``.
    """

    tokens: list[str]
    spans: list[tuple[int, int, str]]
    labels: list[str] | None = None
    id: str | None = None
    source: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    ignore: list[tuple[int, int]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(self.tokens)

    def char_spans(self) -> list[tuple[int, int, str]]:
        """The spans as char offsets into :attr:`text`."""
        return word_spans_to_char(self.tokens, self.spans)

    def to_gliner(self) -> dict[str, Any]:
        """The gliner training dict: ``{"tokenized_text", "ner"}`` (+ ``label`` when known)."""
        d: dict[str, Any] = {"tokenized_text": list(self.tokens), "ner": [[s, e, t] for s, e, t in self.spans]}
        if self.labels is not None:
            d["label"] = list(self.labels)
        return d


def _without_blank_tokens(ex: TrainingExample) -> TrainingExample:
    """``ex`` without its empty or whitespace tokens (outside every span: a span over one is refused), the spans'
    word indices moved with them: read as an evaluation sentence, the tokens joined by spaces gave a double space,
    and the gold after it no longer met the words a model reads (training reads the tokens as they are)."""
    if all(t.strip() for t in ex.tokens):
        return ex
    new, kept = {}, []
    for k, t in enumerate(ex.tokens):
        if t.strip():
            new[k] = len(kept)
            kept.append(t)
    return dataclasses.replace(ex, tokens=kept, spans=[(new[a], new[b], lab) for a, b, lab in ex.spans],
                               ignore=[])


def _check_word_spans(tokens: list[str], spans: Any, where: str) -> list[tuple[int, int, str]]:
    if not isinstance(spans, list):
        raise DataError("'ner' must be a list of [start, end, type]", where=where,
                        fix="write spans as [word_start, word_end_inclusive, type]")
    out = []
    for j, sp in enumerate(spans):
        if isinstance(sp, (list, tuple)) and any(isinstance(x, bool) for x in sp[:2]):
            raise DataError(f"span {j} {list(sp)!r} has true/false as a word index", where=where,
                            fix="write word indices as integers: [start, end_inclusive, type]")
        ok = (isinstance(sp, (list, tuple)) and len(sp) == 3 and _is_index(sp[0]) and _is_index(sp[1])
              and isinstance(sp[2], str) and sp[2].strip() != "" and 0 <= sp[0] <= sp[1] < len(tokens))
        if not ok:
            raise DataError(f"span {j} is invalid: {sp!r} ({len(tokens)} tokens)", where=where,
                            fix="spans are [word_start, word_end_inclusive, type] with 0 <= start <= end < len(tokens) "
                                "and a non-empty type")
        blank = [k for k in range(sp[0], sp[1] + 1) if not tokens[k].strip()]
        if blank:
            raise DataError(f"span {j} {list(sp)!r} covers token {blank[0]} {tokens[blank[0]]!r}, which is empty or "
                            "only whitespace", where=where,
                            fix="remove empty tokens from 'tokenized_text' and shift the span indices after them, "
                                "or drop the span")
        out.append((sp[0], sp[1], sp[2]))
    return out


def _is_index(x: Any) -> bool:
    """A word index or character offset: an int, not a bool (JSON true is not word 1)."""
    return isinstance(x, int) and not isinstance(x, bool)


def _check_ranges(tokens: list[str], ranges: Any, where: str) -> list[tuple[int, int]]:
    if isinstance(ranges, list) and any(isinstance(r, (list, tuple)) and any(isinstance(x, bool) for x in r)
                                        for r in ranges):
        raise DataError("'ignore' has true/false as a word index", where=where,
                        fix="write each ignored range as [start, end] with integer word indices")
    ok = isinstance(ranges, list) and all(
        isinstance(r, (list, tuple)) and len(r) == 2 and all(_is_index(x) for x in r)
        and 0 <= r[0] <= r[1] < len(tokens) for r in ranges)
    if not ok:
        raise DataError(f"'ignore' must be a list of [word_start, word_end_inclusive] within {len(tokens)} tokens",
                        where=where,
                        fix="write each ignored range as [start, end] with 0 <= start <= end < len(tokens)")
    return [(r[0], r[1]) for r in ranges]


GLINER_KEYS = ("tokenized_text", "ner", "label", "labels", "ignore")


def iter_gliner_training(path: str | Path) -> Iterator[TrainingExample]:
    """Stream GLiNER training records (``tokenized_text`` + ``ner``) from a JSON array or JSONL file.

    A record without ``ner`` but with a key GLiNER JSON does not have (``nre``) is an error, not a sentence
    without entities; a record with ``ner`` may carry other keys."""
    p = Path(path)
    empty = 0
    for i, rec, line, where in iter_json_records_at(p):
        toks = rec.get("tokenized_text") if isinstance(rec, dict) else None
        if not (isinstance(toks, list) and all(isinstance(t, str) for t in toks)):
            hint = next((h for k in rec for h in [_did_you_mean(str(k), ["tokenized_text"])] if h), "") \
                if isinstance(rec, dict) and "tokenized_text" not in rec else ""
            raise DataError(f"record {i} has no 'tokenized_text' list of strings{hint}", where=where,
                            fix='records are {"tokenized_text": [str], "ner": [[s, e, type]]}')
        _check_record_keys(rec, "ner", GLINER_KEYS, where, i)
        if not toks:
            empty += 1
            continue
        yield TrainingExample(tokens=toks, spans=_check_word_spans(toks, rec.get("ner", []), where),
                              labels=_record_labels(rec, where), id=str(i), source=str(p),
                              ignore=_check_ranges(toks, rec.get("ignore", []), where))
    _warn_empty(p, empty, "records with no tokens")


def _record_labels(rec: dict, where: str, spans_key: str = "ner") -> list[str] | None:
    """A record's own label list (``label`` or ``labels``): the types to prompt it with; None when absent.
    ``spans_key``: the record's key of gold spans (``ner``; ``entities`` in eval JSON)."""
    key = "label" if "label" in rec else "labels" if "labels" in rec else None
    if key is None or rec[key] is None:
        return None
    labels = rec[key]
    if not (isinstance(labels, list) and all(isinstance(x, str) and x.strip() for x in labels)):
        raise DataError(f"'{key}' must be a list of non-empty strings, got {str(labels)[:80]}", where=where,
                        fix=f'write e.g. "{key}": ["person", "location"], or leave it out to prompt with every '
                            "type of the data")
    if not labels and rec.get(spans_key):
        raise DataError(f"'{key}' is empty but the record has entities", where=where,
                        fix=f"list the types to prompt with in '{key}', or leave it out")
    return list(labels)


def _warn_empty(p: Path, n: int, what: str) -> None:
    if n:
        log.warning("%s: skipped %d %s", p, n, what)


def char_span_to_words(starts: Sequence[int], ends: Sequence[int], a: int, b: int) -> tuple[int, int] | None:
    """The words ``(first, last)`` of the char span ``[a, b)``, given the words' char ``starts``/``ends`` (sorted,
    not overlapping); None when the span cuts a word ("John" in "Johnny") or holds no word. Spaces and skipped
    invisible characters at the span's ends are not part of any word and cut none."""
    i = bisect.bisect_left(starts, a)  # the first word starting at or after a
    if i > 0 and ends[i - 1] > a:  # the word before starts before a and ends after it: a is inside it
        return None
    j = bisect.bisect_right(ends, b) - 1  # the last word ending at or before b
    if j + 1 < len(starts) and starts[j + 1] < b:
        return None
    return (i, j) if i <= j else None


def iter_sentence_json_training(path: str | Path, labels: list[str] | None = None) -> Iterator[TrainingExample]:
    """Eval-style JSON (``sentence`` + char ``pos``) as training examples, the sentence split into words by the
    model's own splitter (:func:`glinker.model.words.split_words`, used for prediction: punctuation is a word of
    its own, "Smith," is "Smith" ","), so an entity of natural text ending before a comma or period is a word span.

    Entities whose offsets still cut a word (a few in the real files, e.g. "Australia" inside "Australian") are
    dropped with one warning per file (their count and the first one), as they cannot be a word span. Evaluation
    does not read through this: it keeps the gold character spans (:func:`iter_ner_eval_json`).
    """
    from glinker.model.words import split_words

    p = Path(path)
    dropped = 0
    first = ""
    empty = 0
    for ex in iter_ner_eval_json(p):
        sp = split_words(ex.text)
        if not sp.words:
            empty += 1
            continue
        spans = []
        for g in ex.spans:
            ws = char_span_to_words(sp.starts, sp.ends, g.start, g.end)
            if ws is None:
                dropped += 1
                if not first:
                    first = f" (the first: {g.text!r} at [{g.start}, {g.end}] of record {ex.id}, {ex.where})"
                continue
            spans.append((ws[0], ws[1], g.label))
        line = ex.where.rsplit(":", 1)[-1].split(" ", 1)[0] if ex.where else ""  # FILE:LINE (record N)
        yield TrainingExample(tokens=list(sp.words), spans=spans, labels=labels, id=ex.id, source=str(p),
                              meta={"line": int(line)} if line.isdigit() else {})
    if dropped:
        log.warning("%s: dropped %d entities whose offsets are not on word boundaries%s", p, dropped, first)
    _warn_empty(p, empty, "empty sentences")


BIO_TYPE_NAMES = {"PER": "person", "ORG": "organization", "LOC": "location", "MISC": "misc"}
"""Natural-language names for CoNLL tag types: the bi-encoder is prompted with names, not tags. Matched in any
case (``B-per``, ``B-Per`` and ``B-PER`` are all ``person``)."""


def iter_bio(path: str | Path, type_names: dict[str, str] | None = BIO_TYPE_NAMES) -> Iterator[TrainingExample]:
    """Stream a CoNLL-like BIO file, one token per line and a blank line between sentences.

    Layouts: ``idx<TAB>token<TAB>TAG`` (CoNLL-U-like, an index column counting the sentence's tokens),
    ``token<TAB>TAG``, and CoNLL-2003's own space-separated ``token POS CHUNK TAG``: the token is the first
    column (the second when the first counts tokens), the tag the last. Columns are split on tabs when a line has
    one, else on spaces. ``-DOCSTART-`` lines (document boundaries) and ``# `` comments are skipped (a line whose
    last column is ``O``, ``# O``, is the token ``#``). Lines end in \\n, \\r\\n or \\r alone.

    Whether the first column is an index is decided for the whole file (:func:`_bio_indexed`, a first pass over
    it): a CoNLL-2003 file whose first sentence is ``1 CD B-NP O`` has no index column. Every token line has as
    many columns as the first one; a line with another number is an error naming it (a file mixing layouts would
    be read with the wrong column as its words).

    Tags are ``O``, ``B-X``, ``I-X`` (an ``I-X`` that does not continue an ``X`` starts a new span, as in IOB1),
    ``S-X``/``E-X`` of BIOES and ``U-X``/``L-X`` of BILOU. ``type_names`` maps tag types to label names, the type
    matched in any case (``B-per`` is ``person`` as ``B-PER`` is; so is ``b-per``); unknown types stay as they are. An empty token
    (a line ``<TAB>O``) is an error: it is no word, and every span after it would be scored on the wrong words.
    A file with no token line is an error too.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"file not found: {p}", where=str(p), fix="check the path (and GLINKER_DATA)")
    names: dict[str, str] = {}
    for k, v in (type_names or {}).items():
        names.setdefault(k.upper(), v)
    rows: list[tuple[list[str], int]] = []  # a sentence's split lines and their line numbers
    col = 1 if _bio_indexed(p) else 0  # the token's column
    n_sent = 0
    layout: tuple[int, int] | None = None  # the number of columns of the first token line, and its line

    def sentence() -> TrainingExample:
        nonlocal n_sent
        toks: list[str] = []
        tags: list[tuple[str, str, int]] = []
        for cols, n in rows:
            tok = cols[col]
            if not tok:
                raise DataError(f"empty token (column {col + 1} of {'<TAB>'.join(cols)!r}, before the tag)",
                                where=f"{p}:{n}",
                                fix="write the word in that column, or delete the line: an empty token is no word "
                                    "and shifts every span after it")
            tag = cols[-1]
            if tag in ("O", "o"):
                tags.append(("O", "", n))
            else:
                m = _TAG_PARTS.fullmatch(tag)
                if not m:
                    raise DataError(f"invalid tag {tag!r} (the last column)", where=f"{p}:{n}",
                                    fix="tags are O, B-TYPE, I-TYPE (or S-/E- of BIOES, U-/L- of BILOU), in the last "
                                        "column")
                pre = m.group(1).upper()  # b-per as B-per: the type keeps its case (matched in any case)
                tags.append(({"U": "S", "L": "E"}.get(pre, pre), m.group(2), n))
            toks.append(tok)
        ex = _bio_example(toks, tags, names, p, n_sent)
        n_sent += 1
        return ex

    for n, cols in _bio_rows(p):
        if cols is None:
            yield sentence()
            rows = []
            continue
        if layout is None:
            layout = (len(cols), n)
        elif len(cols) != layout[0]:
            raise DataError(f"this line has {len(cols)} columns, the lines before it {layout[0]} (from line "
                            f"{layout[1]}): the file mixes layouts, and its words would be read from the wrong "
                            "column", where=f"{p}:{n}",
                            fix="give every token line of the file the same columns ('token<TAB>TAG', "
                                "'idx<TAB>token<TAB>TAG' or CoNLL-2003's 'token POS CHUNK TAG'); a token that holds a "
                                "space needs tab-separated columns")
        rows.append((cols, n))
    if n_sent == 0:
        empty = not p.read_bytes().strip()
        raise DataError("the file is empty" if empty else "the file holds no token line (only blank lines, "
                        "# comments or -DOCSTART- lines)", where=str(p),
                        fix="remove it from the data, or write one token and its tag per line ('token<TAB>TAG'), "
                            "a blank line between sentences")


_TAG_PARTS = re.compile(r"([BIESULbiesul])[-_](.+)")  # a tag's prefix and type


def _comment(line: str) -> bool:
    """Whether a ``# `` line before a sentence is a comment (CoNLL-U's ``# sent_id = 1``, ``# newdoc``, ``# S-1``,
    ``# source: e-mail``) rather than the token ``#`` outside any entity (``# O``, CoNLL-2003's ``# NN I-NP O``): it
    is a token line when its last column is ``O`` and it holds no ``=``."""
    cols = line.split()
    return "=" in line or len(cols) < 2 or cols[-1] not in ("O", "o")


def _byte_lines(f: Any) -> Iterator[bytes]:
    """The lines of a binary file, split at \\n; or at \\r where its lines end in \\r alone (classic Mac OS, some
    exporters), which would otherwise read as one line."""
    head = f.read(1 << 16)
    f.seek(0)
    if b"\n" in head or b"\r" not in head[:-1]:
        yield from f
        return
    buf = b""
    for chunk in iter(lambda: f.read(1 << 16), b""):
        buf += chunk
        *lines, buf = buf.split(b"\r")
        for line in lines:
            yield line + b"\n"
    if buf:
        yield buf


def _bio_rows(p: Path) -> Iterator[tuple[int, list[str] | None]]:
    """The token lines of a BIO file as ``(line number, columns)``, and ``(line number, None)`` where a sentence
    ends (a blank line, a ``-DOCSTART-`` line or the end of the file after a token line); ``# `` comments before a
    sentence are skipped. A DataError names a line that is not UTF-8, has an empty last column or fewer than two
    columns."""
    in_sentence = False
    n = 0
    with p.open("rb") as f:
        for n, braw in enumerate(_byte_lines(f), 1):
            try:
                raw = braw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError:
                raise not_utf8(p) from None
            line = raw.rstrip("\n").rstrip("\r")
            if not line.strip() or line.startswith("-DOCSTART-"):
                if in_sentence:
                    yield n, None
                    in_sentence = False
                continue
            if line.startswith("# ") and not in_sentence and _comment(line):
                continue  # CoNLL-U comment lines
            cols = line.split("\t") if "\t" in line else line.split()
            cols = [c.strip() for c in cols]
            if len(cols) >= 2 and not cols[-1]:
                raise DataError(f"the last column is empty, so the line has no tag: {line[:60]!r} ends with a tab",
                                where=f"{p}:{n}",
                                fix="remove the tab at the end of the line: the tag must be the last column "
                                    "('token<TAB>TAG')")
            if len(cols) < 2:
                raise DataError(f"expected a token and its tag, got {line[:60]!r}", where=f"{p}:{n}",
                                fix="one token per line with its tag in the last column ('token TAG' or "
                                    "'idx<TAB>token<TAB>TAG'); a blank line between sentences")
            in_sentence = True
            yield n, cols
    if in_sentence:
        yield n + 1, None


def _bio_indexed(p: Path) -> bool:
    """Whether the first column of a BIO file counts its tokens: in most token lines (of three columns or more),
    the first column is the number the line has in its sentence, counting 0, 1, 2... or 1, 2,
    3... (or going on from the sentence before: a file numbering its tokens throughout). Decided on the whole file,
    not its first sentence: CoNLL-2003's ``1 CD B-NP O`` counts, its other sentences do not; and not by every line
    either: an indexed file with an irregular line (a Universal Dependencies range ``2-3``, a gap) stays indexed
    (its words read from the second column on every line). A line the reader refuses ends the pass (the reader
    names it)."""
    nxt: int | None = None  # the index the next token line has when the first column counts
    last = -1  # the index of the last token line that counted
    counted = lines = 0
    try:
        for _n, cols in _bio_rows(p):
            if cols is None:
                nxt = None
                continue
            lines += 1
            i = int(cols[0]) if len(cols) >= 3 and cols[0].isdigit() else None
            if i is not None and (i == nxt if nxt is not None else i in (0, 1, last + 1)):
                counted += 1
                last = i
            nxt = None if i is None else i + 1
    except DataError:
        pass
    return lines > 0 and counted > 0.5 * lines


def _bio_example(toks: list[str], tags: list[tuple[str, str, int]], names: dict[str, str], p: Path,
                 i: int) -> TrainingExample:
    spans: list[tuple[int, int, str]] = []
    cur: list[Any] | None = None  # [start, end, type]
    for k, (pre, typ, _n) in enumerate(tags):
        if pre == "O":
            cur = None
            continue
        if pre in ("I", "E") and cur is not None and cur[2] == typ and cur[1] == k - 1:
            cur[1] = k
        else:
            cur = [k, k, typ]
            spans.append(cur)  # type: ignore[arg-type]
        if pre in ("S", "E"):
            cur = None
    out = [(s, e, names.get(t.upper(), t)) for s, e, t in spans]
    return TrainingExample(tokens=list(toks), spans=out, id=str(i), source=str(p), meta={"line": tags[0][2]})


_WORD_RE = re.compile(r"\w+(?:[-_]\w+)*|\S")  # gliner's default word splitter


def _tokenize(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    toks, offs = [], []
    for m in _WORD_RE.finditer(text):
        toks.append(m.group())
        offs.append((m.start(), m.end()))
    return toks, offs


def _find_token_seq(tokens: list[str], needle: list[str]) -> list[int]:
    if not needle:
        return []
    n = len(needle)
    return [i for i in range(len(tokens) - n + 1) if tokens[i:i + n] == needle]


PILENER_KEYS = ("doc_question_pairID", "tagName", "input", "output", "instruction")


def iter_pilener(path: str | Path) -> Iterator[TrainingExample]:
    """Read Pile-NER QA-style samples (``doc_question_pairID``, ``tagName``, ``input``, ``output``).

    All lines of one passage (same id before ``:``; they are not adjacent in the files) become one example:
    tokens from gliner's word splitter, every occurrence of each answer string as a span of type
    ``tagName``, ``labels`` = every type asked (types with no answer are negatives) and
    ``meta["definitions"]`` = the type definitions. Passages are grouped in memory, so this reader holds
    one file's examples (about 1 KB per passage).
    """
    p = Path(path)
    docs: dict[str, TrainingExample] = {}
    texts: dict[str, str] = {}  # each passage's input, which every question of it must repeat
    unfound = 0
    for rec, line in iter_json_records(p):
        where = f"{p}:{line}"
        try:
            pair = str(rec["doc_question_pairID"])
            tag = rec["tagName"]
            text = rec["input"]
            answers = json.loads(rec["output"]) if isinstance(rec["output"], str) else rec["output"]
        except (KeyError, TypeError) as e:
            hint = next((f"; {k!r}{h}" for k in rec if k not in PILENER_KEYS
                         for h in [_did_you_mean(str(k), PILENER_KEYS)] if h), "") if isinstance(rec, dict) else ""
            raise DataError(f"Pile-NER record lacks a field: {e}{hint}", where=where,
                            fix="records need doc_question_pairID, tagName, input and output") from None
        except json.JSONDecodeError as e:
            raise DataError(f"'output' is not a JSON list: {e.msg}", where=where,
                            fix='output is a JSON-encoded list of strings, e.g. "[\\"Paris\\"]"') from None
        instruction = rec.get("instruction")
        if not isinstance(answers, list) or not isinstance(text, str) or not isinstance(tag, str) \
                or not isinstance(rec["doc_question_pairID"], str) or not isinstance(instruction, (str, type(None))):
            raise DataError("'doc_question_pairID', 'input', 'tagName' and 'instruction' (when given) must be strings "
                            "and 'output' a list of strings", where=where, fix="fix the record's field types")
        bad = [a for a in answers if not isinstance(a, str)]
        if bad:  # dropped without a word before
            raise DataError(f"'output' holds {json.dumps(bad[0])[:40]}, not a string", where=where,
                            fix='output is a list of the answers\' texts, e.g. ["Paris"]')
        doc = pair.split(":", 1)[0]
        cur = docs.get(doc)
        if cur is None:
            toks, _ = _tokenize(text)
            cur = docs[doc] = TrainingExample(tokens=toks, spans=[], labels=[], id=doc, source=str(p),
                                              meta={"definitions": {}, "line": line})
            texts[doc] = text
        elif texts[doc] != text:  # its answers were searched in the first passage of that id
            raise DataError(f"document {doc!r} (the part of doc_question_pairID before ':') has another 'input' "
                            f"than at line {cur.meta['line']}", where=where,
                            fix="give each passage its own document id, or the same input text to every question of "
                                "one passage")
        assert cur.labels is not None
        if tag not in cur.labels:
            cur.labels.append(tag)
        m = re.search(r"DEFINITION:\s*(.+)", instruction or "")
        if m:
            cur.meta["definitions"][tag] = m.group(1).strip()
        seen = set(cur.spans)
        for a in answers:
            if not isinstance(a, str):
                continue
            needle, _ = _tokenize(a)
            hits = _find_token_seq(cur.tokens, needle)
            if not hits:
                unfound += 1
            for i in hits:
                sp = (i, i + len(needle) - 1, tag)
                if sp not in seen:
                    seen.add(sp)
                    cur.spans.append(sp)
    if unfound:  # the answer is not a run of the passage's words (a paraphrase, or cut by the tokenizer)
        log.warning("%s: %d answers are not found in their passage as whole words and give no span", p, unfound)
    empty = sum(1 for d in docs.values() if not d.tokens)
    _warn_empty(p, empty, "empty passages")
    yield from (d for d in docs.values() if d.tokens)


TRAINING_FORMATS = ("gliner", "sentence_json", "bio", "pilener")


JSON_SUFFIXES = (".json", ".jsonl")
# a BIO tag as the last column of a line: O, or a prefix of IOB/BIOES/BILOU and a type (no quote: the last word of a
# JSON line is quoted, a literal, a number or punctuation); any case, so that the reader names a bad one
_BIO_TAG = re.compile(r'O|[BIESUL][-_][^\s"]+', re.IGNORECASE)
_SNIFF_LINE = 4096


def _bio_line(line: str) -> bool:
    """Whether a line reads as ``token<TAB or spaces>TAG`` with a BIO-like tag (O, B-x, I-x, E-x, S-x, U-x, L-x) in
    its last column."""
    cols = [c.strip() for c in (line.split("\t") if "\t" in line else line.split())]
    return len(cols) >= 2 and bool(_BIO_TAG.fullmatch(cols[-1]))


def _first_lines(p: Path) -> tuple[str, str | None]:
    """The file's first non-blank line (its first 4 KB), and its first line that is not blank, a ``# `` comment or
    ``-DOCSTART-`` (where a BIO file's first token is), None when that line is longer than 4 KB (no token line is;
    a JSON line cut there could end in any word) or not found in the first 1,000 lines."""
    first, data = "", None
    with p.open("rb") as f:
        for _ in range(1000):
            raw = f.readline(_SNIFF_LINE + 1)
            if not raw:
                break
            if b"\n" not in raw and b"\r" in raw[:-1]:  # lines that end in \r alone: read from the first 4 KB
                for part in raw.split(b"\r")[:-1]:
                    line = part.decode("utf-8", "replace").lstrip("\ufeff")
                    if line.strip():
                        first = first or line
                        if not line.startswith(("# ", "-DOCSTART-")):
                            return first, line
                break
            whole = len(raw) <= _SNIFF_LINE or raw.endswith(b"\n")
            line = raw[:_SNIFF_LINE].decode("utf-8", "replace").lstrip("\ufeff").rstrip("\r\n")
            if not whole:  # skip the rest of a long line
                while raw and not raw.endswith(b"\n"):
                    raw = f.readline(1 << 20)
            if not line.strip():
                continue
            first = first or line
            if not line.startswith(("# ", "-DOCSTART-")):
                data = line if whole else None
                break
    return first, data


def sniff_training_format(path: str | Path) -> str:
    """Which of :data:`TRAINING_FORMATS` a file holds, from its content, whatever its extension (``.data``,
    ``.iob2``, a ``.txt`` starting with a ``[`` token): a file whose first non-blank line starts a JSON value and
    whose first record decodes is JSON (the record's keys name the format); else a file whose first token line is
    ``token<TAB or spaces>TAG`` with a BIO tag is BIO; else a ``.json``/``.jsonl`` file is JSON (read, to name its
    error) and any other file BIO (the BIO reader names the line it cannot read)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"file not found: {p}", where=str(p), fix="check the path (and GLINKER_DATA)")
    first, data = _first_lines(p)
    bio = data is not None and _bio_line(data)
    if not first.lstrip().startswith(("{", "[")):
        if bio or p.suffix.lower() not in JSON_SUFFIXES:
            return "bio"  # an empty file not named .json/.jsonl too: BIO, read as no sentences (as before)
    elif bio and data == first and not _parses_as_json(first):
        return "bio"  # "[<TAB>O": a BIO token that looks like the start of JSON
    try:
        rec, line = next(iter_json_records(p))
    except StopIteration:
        if p.read_bytes().strip(b" \t\r\n\xef\xbb\xbf"):  # "[]": JSON that holds no record
            raise DataError("the file holds no records (an empty JSON array)", where=str(p),
                            fix="add records, or remove the file from the data") from None
        raise DataError("file is empty", where=str(p), fix="remove it or add records") from None
    if isinstance(rec, dict):
        if "tokenized_text" in rec:
            return "gliner"
        if "sentence" in rec:
            return "sentence_json"
        if "doc_question_pairID" in rec:
            return "pilener"
    hint = next((h for k in rec for h in [_did_you_mean(str(k), _FORMAT_KEYS)] if h), "") \
        if isinstance(rec, dict) else ""
    linking = isinstance(rec, dict) and "text" in rec and "mentions" in rec  # AIDA-style linking data
    raise DataError(f"unknown training format (first record keys: {sorted(rec) if isinstance(rec, dict) else type(rec).__name__}){hint}",
                    where=f"{p}:{line}",
                    fix=("this is entity-linking data (AIDA-style text + mentions): score linking on it with `glinker "
                         "eval el --data FILE`, train on it as a `kind: linking` source with the KB's `entities:` "
                         "(docs/training.md), or give NER data in "
                         if linking else "use ") + f"one of {', '.join(TRAINING_FORMATS)}")


_FORMAT_KEYS = ("tokenized_text", "sentence", "doc_question_pairID")


def _parses_as_json(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


_SPLIT_WORDS = {"train", "training", "dev", "val", "valid", "validation", "test"}
_SPLIT_ALIASES = {"dev": ("dev", "val", "valid", "validation"), "val": ("dev", "val", "valid", "validation"),
                  "validation": ("dev", "val", "valid", "validation")}


def training_files(path: str | Path, split: str | None = None) -> list[Path]:
    """Data files of a training folder (or the file itself), optionally those of one split (train, dev...)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise DataError(f"not found: {p}", where=str(p), fix="check the path (and GLINKER_DATA)")
    files = sorted(f for f in p.iterdir() if f.is_file() and f.name != "labels.json"
                   and f.suffix in (".json", ".jsonl", ".conllu", ".conll", ".bio", ".tsv", ".iob", ".iob2", ".txt")
                   # a .txt is data only when named as a split (train.txt, not README.txt)
                   and (f.suffix != ".txt" or set(f.stem.lower().replace("-", "_").split("_")) & _SPLIT_WORDS))
    if split is not None:
        keys = _SPLIT_ALIASES.get(split, (split,))
        files = [f for f in files if any(k in f.stem.lower().replace("-", "_").split("_") or f.stem.lower() == k
                                         for k in keys)]
    return files


def _training_reader(f: Path, kind: str, labels: list[str] | None = None) -> Iterator[TrainingExample]:
    """The reader of one training file of format ``kind`` (``labels``: only for eval-style JSON, which has none)."""
    if kind == "gliner":
        return iter_gliner_training(f)
    if kind == "sentence_json":
        return iter_sentence_json_training(f, labels)
    if kind == "bio":
        return iter_bio(f)
    if kind == "pilener":
        return iter_pilener(f)
    raise DataError(f"unknown format {kind!r}", where=str(f), fix=f"use one of {', '.join(TRAINING_FORMATS)}")


def _data_files(p: Path, split: str | None, what: str) -> list[Path]:
    """:func:`training_files`, or a DataError naming the folder when it has none."""
    files = training_files(p, split)
    if not files:
        raise DataError(f"no {what} file{' for split ' + repr(split) if split else ''} in {p}", where=str(p),
                        fix="expected *.json, *.jsonl, or BIO *.conll/*.conllu/*.bio/*.iob/*.iob2/*.tsv/*.txt files "
                            "(named train/dev/val...)")
    return files


def iter_training(path: str | Path, split: str | None = None, fmt: str | None = None) -> Iterator[TrainingExample]:
    """Stream training examples from a file or folder in any supported format (sniffed unless ``fmt``).

    A folder's ``labels.json``, when present, becomes each example's ``labels`` (unless the record has its own).
    """
    p = Path(path)
    files = _data_files(p, split, "training")
    for f in files:
        labels_file = f.parent / "labels.json"
        labels = read_labels(labels_file) if labels_file.is_file() else None
        for ex in _training_reader(f, fmt or sniff_training_format(f), labels):
            if ex.labels is None and labels is not None:
                ex.labels = labels
            yield ex


# ------------------------------------------------------------------------------------------------------------
# entity linking data


@dataclass
class GoldMention:
    """A gold mention: char span, entity id (``NIL`` when it links to nothing known), and flags.

    ``optional`` mentions (ELEVANT ``optional``, DATETIME and QUANTITY) are neither required nor penalised.
    ``raw_id`` keeps the source's id when it was mapped to NIL (``<NIL>``, ``Unknown``, an unmapped title).
    """

    start: int
    end: int
    text: str
    entity_id: str = NIL
    optional: bool = False
    coref: bool = False
    label_id: int | None = None
    parent: int | None = None
    children: list[int] = field(default_factory=list)
    raw_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def is_nil(self) -> bool:
        return self.entity_id == NIL


@dataclass
class ELDocument:
    """A document with gold mentions; predictions outside ``evaluation_span`` are not scored."""

    id: str
    text: str
    mentions: list[GoldMention]
    evaluation_span: tuple[int, int]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_document(self) -> Any:
        """A :class:`glinker.types.Document` (gold mentions in ``meta["mentions"]`` for given-mention runs)."""
        from glinker.types import Document

        return Document(id=self.id, text=self.text,
                        meta={"mentions": [{"start": m.start, "end": m.end} for m in self.mentions]})


_QID = re.compile(r"Q[1-9]\d*")
# a QID written as a Wikidata prefix or URL (wd:Q90, http://www.wikidata.org/entity/Q90, .../wiki/Q90)
_QID_FORMS = re.compile(r"(?:wd:|https?://(?:www\.)?wikidata\.org/(?:entity|wiki)/)?(Q[1-9]\d*)")
# what annotation sets write for "no entity" (AIDA's --NME--, ELEVANT's <NIL>, Unknown, NIL), whole values only: an
# id such as UNKNOWN-LABS-7 or "none" may be another KB's
NIL_MARKERS = frozenset({"--nme--", "nil", "<nil>", "unknown", ""})


def gold_qid(value: Any) -> tuple[str | None, bool]:
    """(the QID ``value`` gives, or None; whether it is a NIL marker). ``" Q90 "``, ``wd:Q90`` and Wikidata URLs
    give ``Q90``; ``--NME--``, ``NIL``, ``Unknown`` (any case) are NIL markers; anything else (a title, a number) is
    neither: an id that QID scoring cannot use."""
    if value is None:
        return None, True
    raw = str(value).strip()
    m = _QID_FORMS.fullmatch(raw)
    if m:
        return m.group(1), False
    return None, raw.lower() in NIL_MARKERS
ELEVANT_NIL_IDS = ("<NIL>", "<NO_MAPPING>", "Unknown", "NIL", "--NME--", "")


def _check_span(text: str, s: Any, e: Any, where: str, what: str) -> None:
    if not (_is_index(s) and _is_index(e) and 0 <= s <= e <= len(text)):
        raise DataError(f"{what} has invalid offsets ({s!r}, {e!r}); text has {len(text)} chars", where=where,
                        fix="offsets are character positions with 0 <= start <= end <= len(text)")


def _empty_span(s: int, e: int, where: str, what: str, seen: list[str]) -> bool:
    """Whether a gold span is empty (start == end): such a span can never be matched, so it is left out of scoring
    (as ``given_mentions`` leaves empty spans out) with one warning per file naming the first one."""
    if s != e:
        return False
    if not seen:
        log.warning("%s: %s is an empty span (start = end = %d): left out of scoring, where it could only count as a "
                    "miss (as are any further empty spans of this file); give gold spans as [start, end) with end > "
                    "start", where, what, s)
    seen.append(where)
    return True


def _once(ms: list[GoldMention], where: str, seen: list[str]) -> list[GoldMention]:
    """A document's gold mentions with a repeat of one (same span, entity and flags) left out: it counted as two
    gold mentions, both matched by one prediction (or both missed); one warning per file names the first. The same
    span with two entities is kept (ELEVANT's Fair sets give such alternatives)."""
    keys: set[tuple] = set()
    out = []
    for m in ms:
        key = (m.start, m.end, m.entity_id, m.raw_id, m.optional, m.coref)
        if key in keys:
            if not seen:
                log.warning("%s: the gold mention %d-%d (%r, %s) is given twice: counted once (as are any further "
                            "repeats of this file)", where, m.start, m.end, m.text[:40], m.entity_id)
            seen.append(where)
            continue
        keys.add(key)
        out.append(m)
    return out


_AIDA_MENTION_KEYS = ("start", "end", "token_start", "token_end", "mention", "ner_type", "wikipedia_title",
                      "wikipedia_url", "wikipedia_id", "freebase_mid", "wikidata_qid", "qid_source", "wikidata_label")
_ELEVANT_LABEL_KEYS = ("id", "span", "entity_id", "name", "type", "coref", "parent", "children", "desc", "optional")


# keys a gold file of one's own may give a mention's entity under (the other format's key among them)
_ENTITY_KEYS = frozenset(("qid", "wikidata", "wikidata_id", "wikidata_qid", "entity", "entity_id", "kb_id",
                          "wikidata_entity", "gold_qid", "gold_entity", "gold_id"))


def _check_id_key(m: dict, needed: str, known: Sequence[str], where: str, what: str) -> None:
    """A gold mention without its entity key (``needed``) is NIL; but one that holds a QID under a misspelling of
    ``needed`` ("wikidata_qdi", "entityid": two edits at most) or under a usual name for an entity ("qid", "entity_id",
    "wikidata_id"), would be scored as NIL without a word: an error naming the key. Other keys are read past, a QID
    among them too ("predicted_qid", "old_qid": metadata), and so are near-miss keys without a QID ("wikidata_url").
    A usual name for an entity holding another KB's id ("entity_id": "ACME-1") is the same error: a set of company
    ids was read as NIL without a word."""
    if needed in m:
        return
    from rapidfuzz.distance import DamerauLevenshtein

    for k, v in m.items():
        if k in known:
            continue
        if not (isinstance(v, str) and _QID.fullmatch(v)):
            # (AIDA only: ELEVANT reads an entity_id that is no QID as NIL, so no rename would help there)
            if needed == "wikidata_qid" and str(k).lower() in _ENTITY_KEYS and isinstance(v, (str, int)) \
                    and not isinstance(v, bool) \
                    and str(v).strip() and not gold_qid(v)[1]:
                raise DataError(f"{what} has no {needed!r} but has {str(k)!r}: {v!r}; it would be read as NIL",
                                where=where, fix=f"rename {str(k)!r} to {needed!r} (any KB's ids go there; null or "
                                                 "absent for a NIL mention)")
            continue
        key = str(k)
        typo = DamerauLevenshtein.distance(key.lower(), needed, score_cutoff=2) <= 2
        if typo or key.lower() in _ENTITY_KEYS:
            raise DataError(f"{what} has no {needed!r} but has {key!r}: {v!r}"
                            f"{f' (did you mean {needed!r}?)' if typo else ''}; it would be read as NIL",
                            where=where, fix=f"rename {key!r} to {needed!r} (null or absent for a NIL mention)")


_QID_LOOKAHEAD = 1000  # documents of an AIDA file read to tell a set of QIDs from another KB's


def _names_qids(p: Path) -> bool:
    """Whether a mention of the first :data:`_QID_LOOKAHEAD` documents of the AIDA file ``p`` gives a Wikidata QID
    (else its ids are another KB's). Bounded: ``--limit 10`` on a big file does not read all of it."""
    from itertools import islice

    try:
        for _, rec, _, _ in islice(iter_json_records_at(p), _QID_LOOKAHEAD):
            for m in (rec.get("mentions") or []) if isinstance(rec, dict) else []:
                if isinstance(m, dict) and gold_qid(m.get("wikidata_qid"))[0]:
                    return True
    except DataError:  # a malformed line further on is the reading's to say, where it reaches it
        pass
    return False


def iter_aida(path: str | Path) -> Iterator[ELDocument]:
    """Stream AIDA JSONL: ``{"id", "text", "mentions": [{"start", "end", "mention", "wikidata_qid"|null, ...}]}``.

    A mention without a Wikipedia title is NIL. A title without a QID is also NIL for QID-based scoring,
    with ``raw_id`` = the title and ``meta["unmapped"] = True`` so reports can count them. ``wikidata_qid`` is read
    by :func:`gold_qid`: ``wd:Q90`` and Wikidata URLs are ``Q90``, NIL markers (``--NME--``, ``Unknown``) NIL; in a
    set that names QIDs, another value (a title, a number) is NIL and unmapped, with a warning; in a set of no QID
    at all (another KB's ids, ``SKU-001``) ids are scored as they are.
    """
    p = Path(path)
    empty: list[str] = []
    repeats: list[str] = []  # gold mentions given twice (said once, see _once)
    not_qids: dict[str, str] = {}  # gold ids that are no QID (first few, with their place): said once at the end
    n_not_qids = 0
    wikidata: bool | None = None  # whether the set names QIDs at all (looked up at its first id that is none)
    for i, rec, line, where in iter_json_records_at(p):
        if not isinstance(rec, dict) or not isinstance(rec.get("text"), str) or not isinstance(rec.get("mentions"), list):
            other = " (this line has ELEVANT's 'labels': one file holds one format, that of its first line)" \
                if isinstance(rec, dict) and "labels" in rec else ""
            raise DataError(f"AIDA record needs 'text' and a 'mentions' list{other}", where=where,
                            fix='one document a line: {"id", "text", "mentions": [{"start", "end", "mention", "wikidata_qid"}]}')
        text = rec["text"]
        ms = []
        for j, m in enumerate(rec["mentions"]):
            if not isinstance(m, dict):
                raise DataError(f"mention {j} is not an object", where=where, fix="mentions are JSON objects")
            s, e = m.get("start"), m.get("end")
            _check_span(text, s, e, where, f"mention {j}")
            surface = text[s:e]
            if m.get("mention") is not None and m["mention"] != surface:
                raise DataError(f"mention {j} text {m['mention']!r} differs from text[{s}:{e}] = {surface!r}",
                                where=where, fix="offsets must be character offsets into 'text' (end exclusive)")
            if _empty_span(s, e, where, f"mention {j}", empty):
                continue
            _check_id_key(m, "wikidata_qid", _AIDA_MENTION_KEYS, where, f"mention {j}")
            raw_qid = m.get("wikidata_qid")
            title = m.get("wikipedia_title")
            meta = {k: m[k] for k in ("ner_type", "wikipedia_title", "wikidata_label") if m.get(k) is not None}
            qid, nil_marker = gold_qid(raw_qid)
            if qid:
                ms.append(GoldMention(s, e, surface, qid, label_id=j, meta=meta))
                continue
            if not nil_marker and wikidata is None:
                wikidata = _names_qids(p)
            if not nil_marker and not wikidata:  # a set of another KB's ids (SKU-001): scored as they are
                ms.append(GoldMention(s, e, surface, str(raw_qid).strip(), label_id=j, meta=meta))
                continue
            if not nil_marker:  # a title, a number among QIDs: scored as NIL, said, counted as unmapped
                n_not_qids += 1
                if len(not_qids) < 3:
                    not_qids.setdefault(str(raw_qid), f"{where} mention {j}")
                meta["unmapped"] = True
            elif title and gold_qid(title) == (None, False):  # a title without a QID (--NME-- is a NIL, not one)
                meta["unmapped"] = True
            ms.append(GoldMention(s, e, surface, NIL, label_id=j,
                                  raw_id=title if nil_marker else str(raw_qid), meta=meta))
        yield ELDocument(id=str(rec.get("id", i)), text=text, mentions=_once(ms, where, repeats),
                         evaluation_span=(0, len(text)), meta={"source": str(p), "line": line})
    if n_not_qids:
        log.warning("%s: %d gold wikidata_qid values are not Wikidata QIDs (%s): scored as NIL and counted as "
                    "unmapped; give QIDs (Q90), or null for a mention of no entity", p, n_not_qids,
                    ", ".join(f"{v!r} at {w}" for v, w in not_qids.items()))


def _check_elevant_fields(lab: dict, where: str, what: str) -> None:
    """The types ELEVANT gives a label's flags and links (``optional``, ``coref``, ``desc``: true or false; ``id``,
    ``parent``: a number or a string; ``children``: a list of them); a DataError naming the label otherwise ("false"
    as a string was read as true, dropping the mention from the gold; a list as an id failed deep in scoring)."""
    for k in ("optional", "coref", "desc"):
        v = lab.get(k)
        if v is not None and not isinstance(v, bool):
            raise DataError(f"{what}: {k} is {json.dumps(v)[:40]}, not true or false", where=where,
                            fix=f'"{k}": true (or false, or leave it out)')
    ids = [("id", lab.get("id")), ("parent", lab.get("parent"))]
    kids = lab.get("children")
    if kids is not None and not isinstance(kids, list):
        raise DataError(f"{what}: children is {json.dumps(kids, default=str)[:40]}, not a list", where=where,
                        fix='"children": [3, 4] (the ids of the labels it contains)')
    ids += [("children", c) for c in kids or []]
    for k, v in ids:
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, str))):
            raise DataError(f"{what}: {k} holds {json.dumps(v, default=str)[:40]}, not a label id (a number)",
                            where=where, fix=f'"{k}": 3')


def iter_elevant(path: str | Path) -> Iterator[ELDocument]:
    """Stream ELEVANT benchmark JSONL: ``{"text", "labels": [{"span", "entity_id", ...}], "evaluation_span"}``.

    ``entity_id`` values that are not Wikidata QIDs (``<NIL>``, ``Unknown...``, ``<NO_MAPPING>``, stray names)
    become NIL, keeping the original in ``raw_id``. DATETIME/QUANTITY labels and ``optional`` labels are
    optional, as in ELEVANT.
    """
    p = Path(path)
    empty: list[str] = []
    repeats: list[str] = []  # gold mentions given twice (said once, see _once)
    for i, rec, line, where in iter_json_records_at(p):
        if not isinstance(rec, dict) or not isinstance(rec.get("text"), str) or not isinstance(rec.get("labels"), list):
            other = " (this line has AIDA's 'mentions': one file holds one format, that of its first line)" \
                if isinstance(rec, dict) and "mentions" in rec else ""
            raise DataError(f"ELEVANT record needs 'text' and a 'labels' list{other}", where=where,
                            fix='one article a line: {"text", "labels": [{"span": [s, e], "entity_id"}], "evaluation_span"}')
        text = rec["text"]
        es = rec.get("evaluation_span") or [0, len(text)]
        if not (isinstance(es, list) and len(es) == 2):
            raise DataError(f"invalid evaluation_span {es!r}", where=where, fix="evaluation_span is [start, end]")
        _check_span(text, es[0], es[1], where, "evaluation_span")
        ms = []
        for j, lab in enumerate(rec["labels"]):
            span = lab.get("span") if isinstance(lab, dict) else None
            if not (isinstance(span, list) and len(span) == 2):
                raise DataError(f"label {j} has no [start, end] span", where=where, fix='labels need "span": [s, e]')
            _check_span(text, span[0], span[1], where, f"label {j}")
            if _empty_span(span[0], span[1], where, f"label {j}", empty):
                continue
            _check_id_key(lab, "entity_id", _ELEVANT_LABEL_KEYS, where, f"label {j}")
            _check_elevant_fields(lab, where, f"label {j}")
            raw = str(lab.get("entity_id", ""))
            typ = str(lab.get("type", ""))
            qid = gold_qid(raw)[0]
            known = qid is not None
            ms.append(GoldMention(
                span[0], span[1], text[span[0]:span[1]], qid if known else NIL,
                optional=bool(lab.get("optional")) or typ in ("DATETIME", "QUANTITY"),
                coref=bool(lab.get("coref")), label_id=lab.get("id", j), parent=lab.get("parent"),
                children=list(lab.get("children") or []), raw_id=None if known else raw,
                meta={"type": typ, "name": lab.get("name"), **({"desc": True} if lab.get("desc") else {})}))
        yield ELDocument(id=str(rec.get("id", i)), text=text, mentions=_once(ms, where, repeats),
                         evaluation_span=(es[0], es[1]), meta={"source": str(p), "line": line,
                                                                "title": rec.get("title")})


def sniff_el_format(path: str | Path) -> str:
    """``aida`` or ``elevant``, from the first record's keys."""
    p = Path(path)
    try:
        rec, line = next(iter_json_records(p))
    except StopIteration:
        raise DataError("file is empty", where=str(p), fix="point at a JSONL file with documents") from None
    if isinstance(rec, dict) and "mentions" in rec:
        return "aida"
    if isinstance(rec, dict) and "labels" in rec:
        return "elevant"
    raise DataError("unknown entity-linking format", where=f"{p}:{line}",
                    fix="expected AIDA JSONL (text + mentions) or ELEVANT JSONL (text + labels)")


def iter_el(path: str | Path, limit: int | None = None) -> Iterator[ELDocument]:
    """Stream EL documents from an AIDA or ELEVANT JSONL file (sniffed); ``limit`` stops after N."""
    it = iter_aida(path) if sniff_el_format(path) == "aida" else iter_elevant(path)
    for i, d in enumerate(it):
        if limit is not None and i >= limit:
            return
        yield d


def _file_tags(paths: Sequence[str | Path]) -> list[str]:
    """A short, distinct tag per file: its name up to the first dot, then more of its name, then its folder's
    name, as needed (``a/test.jsonl`` + ``b/test.jsonl`` -> ``a/test``, ``b/test``)."""
    ps = [Path(p) for p in paths]
    for tag in (lambda p: p.name.split(".")[0], lambda p: p.name.removesuffix(".jsonl").removesuffix(".gz"),
                lambda p: f"{p.parent.name}/{p.name.removesuffix('.jsonl')}", lambda p: str(p)):
        tags = [tag(p) for p in ps]
        if len(set(tags)) == len(tags):
            return tags
    return [f"{i}" for i in range(len(ps))]


def iter_el_files(paths: Sequence[str | Path], limit: int | None = None) -> Iterator[ELDocument]:
    """:func:`iter_el` over one or several files read as one set. With several, every document id is prefixed
    with its file's name up to the first dot (``oke-2015-train:0``; more of its path when two files would share
    it), since separately numbered files repeat ids (the evaluator refuses a repeated id); ``limit`` counts over
    all of them."""
    n = 0
    tags = _file_tags(paths)
    for i, path in enumerate(paths):
        prefix = f"{tags[i]}:" if len(paths) > 1 else ""
        for d in iter_el(path):
            if limit is not None and n >= limit:
                return
            n += 1
            if prefix:
                d.id = prefix + d.id
            yield d
