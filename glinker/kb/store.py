"""The entity store: one SQLite file with the entity records, a normalised alias index that keeps every homonym,
and a journal of index changes not yet applied (so an interrupted update is finished, never lost).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import os
import re
import sqlite3
import unicodedata
import weakref
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from glinker.errors import ConfigError, DataError, KBError
from glinker.io import system_error_kind
from glinker.locks import fork_safe_lock
from glinker.types import Entity

log = logging.getLogger(__name__)

_SQL_VARS = 900  # stay below SQLite's host-parameter limit on old builds

DAMAGED_FIX = "the KB is damaged: rebuild it with `glinker kb build ... --out DIR` (or restore its folder from a copy)"


def write_error(e: BaseException, path: str | Path) -> KBError | None:
    """The KBError for an OSError or SQLite error met writing a KB at ``path``: no space left, a read-only or
    forbidden place (the error's own file named when it has one); None for another error. The error's
    ``write_failed`` is True (a build adds that it resumes)."""
    kind = system_error_kind(e)
    at = str(getattr(e, "filename", None) or path)
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    if kind == "full":
        err = KBError("no space left on its device", where=at,
                      fix=f"free space there (or write the KB on a device with more room), then {AGAIN}")
    elif kind in ("readonly", "denied"):
        why = e.strerror if isinstance(e, OSError) and e.strerror else "read-only"
        err = KBError(f"cannot be written: {why}", where=at,
                      fix=f"make {folder} writable (it is on a read-only mount, or another user's), or copy the KB "
                          f"to writable storage; then {AGAIN}")
    else:
        return None
    err.write_failed = True  # type: ignore[attr-defined]
    return err


AGAIN = "run the command again"
"""How a write error's fix ends (a build says that it resumes instead)."""


def damaged_store(e: BaseException, path: str | Path) -> KBError | None:
    """The KBError for a SQLite error that says the store ``path`` is damaged (its pages, a cut or overwritten
    file); None for another error."""
    if isinstance(e, sqlite3.Error) and system_error_kind(e) == "damaged":
        return KBError(f"the entity store is damaged ({e})", where=str(path), fix=DAMAGED_FIX)
    return None


def store_error(e: BaseException, path: str | Path) -> KBError | None:
    """The KBError for a SQLite error met reading or writing the entity store ``path``: a damaged file
    (:func:`damaged_store`), a disk error, or a write that failed (:func:`write_error`); None for another error."""
    if not isinstance(e, sqlite3.Error):
        return None
    if system_error_kind(e) == "io":
        return KBError("cannot read or write the entity store: disk I/O error", where=str(path),
                       fix="check the storage it is on (a disk or network mount error, no space left), then run "
                           "the command again")
    return damaged_store(e, path) or write_error(e, path)


SCHEMA = """
CREATE TABLE IF NOT EXISTS entities (
    rid INTEGER PRIMARY KEY AUTOINCREMENT,  -- the FAISS id; AUTOINCREMENT so a removed id is never reused
    id TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL,
    description TEXT NOT NULL,
    popularity REAL NOT NULL,
    types TEXT NOT NULL,                    -- JSON list
    aliases TEXT NOT NULL,                  -- JSON list
    data TEXT NOT NULL,                     -- JSON: labels, descriptions, aliases_by_lang, extra
    text_hash TEXT NOT NULL                 -- hash of the embedded text: re-embed only when it changes
);
CREATE TABLE IF NOT EXISTS aliases (
    norm TEXT NOT NULL,
    rid INTEGER NOT NULL,
    PRIMARY KEY (norm, rid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS aliases_rid ON aliases(rid);
CREATE TABLE IF NOT EXISTS alias_counts (   -- how often a normalised form refers to an entity: the p(e|m) prior
    norm TEXT NOT NULL,
    rid INTEGER NOT NULL,
    n REAL NOT NULL,
    PRIMARY KEY (norm, rid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS alias_counts_rid ON alias_counts(rid);
CREATE TABLE IF NOT EXISTS link_stats (     -- where the alias dictionary matched a form in an annotated corpus:
    norm TEXT PRIMARY KEY,                  -- how often (seen) and how often that span was a gold mention (linked)
    linked INTEGER NOT NULL,
    seen INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS name_parts (     -- a person's last name ("wiesel" -> Elie Wiesel), for mentions that
    norm TEXT NOT NULL,                     -- match no alias (see name_part)
    rid INTEGER NOT NULL,
    PRIMARY KEY (norm, rid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS name_parts_rid ON name_parts(rid);
CREATE TABLE IF NOT EXISTS folded (         -- an alias key with its accents taken off, where that differs
    norm TEXT NOT NULL,                     -- ("zurich" -> Zürich): for mentions written without them (fold_key)
    rid INTEGER NOT NULL,
    PRIMARY KEY (norm, rid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS folded_rid ON folded(rid);
CREATE TABLE IF NOT EXISTS pending (rid INTEGER PRIMARY KEY, op TEXT NOT NULL);  -- index changes to apply
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def normalize_alias(name: str) -> str:
    """The alias key: NFKC, case-folded, whitespace collapsed. Exact look-ups compare these keys."""
    if name.isascii():  # fast path: NFKC and casefold are identities on ASCII, except case
        return " ".join(name.lower().split())
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


_LATIN_FOLDS = str.maketrans({"ø": "o", "æ": "ae", "œ": "oe", "đ": "d", "ð": "d", "ł": "l", "þ": "th", "ı": "i",
                              "ħ": "h", "ŧ": "t", "ŋ": "n", "ȣ": "ou", "ƀ": "b", "ɨ": "i", "ʉ": "u"})


# Characters written for an apostrophe: the typographic one (most news and web text), the left quote and its
# reversed form, the modifier letters (Ukrainian and Uzbek transliteration, Hawaiian), the Latin saltillo (ꞌ, the
# glottal stop of some orthographies, as ʼ), the grave and acute accents and the prime of keyboards that lack one, the
# modifier letter prime (ʹ: the soft sign of Russian transliteration, "Tverʹ", and by NFKC the Greek numeral sign,
# "Βʹ", both also written with "'"), the Armenian apostrophe. Fold version 3 reads each as "'" ("o’brien" ->
# "o'brien"); the full-width "＇" is "'" by NFKC. Not the Hebrew geresh (׳): see HEBREW_MARKS.
APOSTROPHES = "\u2019\u2018\u201b\u02bc\u02bb\ua78c\u0060\u00b4\u2032\u02b9\u055a"
# The Hebrew geresh and gershayim, which Hebrew text written on a keyboard without them writes "'" and '"' (ג׳ורג׳
# and ג'ורג' are one name, ארה״ב and ארה"ב one abbreviation): fold version 4 reads them so
HEBREW_MARKS = {"\u05f3": "'", "\u05f4": '"'}
_HEBREW_MARKS = str.maketrans(HEBREW_MARKS)
# (a pattern: str.translate goes through a non-ASCII key character by character, in Python objects)
_TO_APOSTROPHE = re.compile(f"[{re.escape(APOSTROPHES)}]")
# NFKC writes an acute accent (U+00B4, and Greek tonos or oxia written apart: U+0384, U+1FFD) as a space and a
# combining acute: "O´Brien" has the key "o \u0301brien" (a key begins with the mark when the word did: "´s"). Before
# a Greek vowel it is that vowel's accent, written apart as legacy Greek text writes it on a capital ("΄Αγιος" for
# "Άγιος": the tonos is only ever on a vowel), and is dropped as Greek accents are; anywhere else it stands for an
# apostrophe ("Ο΄Μπράιαν", the Greek elision "σ΄ αγαπώ", "L´Oréal")
_GREEK_VOWELS = "".join(c for c in map(chr, [*range(0x0370, 0x0400), *range(0x1F00, 0x2000)])
                        if unicodedata.category(c) == "Ll" and unicodedata.normalize("NFD", c)[0] in "αεηιουω")
_SPACING_ACUTE = re.compile(f"(^| )\u0301(?=[{_GREEK_VOWELS}])|(?:^| )\u0301")


def _spacing_acute(m: re.Match[str]) -> str:
    return "'" if m.group(1) is None else m.group(1)


@functools.cache
def _may_fold(extra: str = "") -> re.Pattern[str]:
    """The characters a fold may change or drop in a key that decomposition leaves as it is: combining marks and
    the letters of ``_LATIN_FOLDS``, ``extra`` (the apostrophes of fold version 3); and any character outside the
    Basic Multilingual Plane, which is rare in a key and keeps the class fast (compiled at first use)."""
    from glinker.model.words import COMBINING_MARKS_BMP

    return re.compile(f"[{COMBINING_MARKS_BMP}{''.join(map(chr, _LATIN_FOLDS))}{re.escape(extra)}"
                      "\U00010000-\U0010ffff]")


def _unfoldable(key: str, extra: str = "") -> bool:
    """True when no fold changes ``key`` (most keys of most scripts: Han, Cyrillic without marks...): checked
    without going through the key character by character in Python."""
    return unicodedata.is_normalized("NFD", key) and unicodedata.is_normalized("NFC", key) \
        and _may_fold(extra).search(key) is None


def fold_accents(key: str) -> str:
    """An alias key (:func:`normalize_alias`) without the accents of Latin letters: "zürich" -> "zurich", "são
    paulo" -> "sao paulo", "łódź" -> "lodz", "ørsted" -> "orsted". Other scripts keep their marks ("й" stays:
    it is another letter than "и"). The fold of stores written before fold version 2 (see :func:`fold_key`)."""
    if key.isascii() or _unfoldable(key):
        return key
    out: list[str] = []
    for c in unicodedata.normalize("NFD", key).translate(_LATIN_FOLDS):  # (ǿ -> ø + mark -> o + mark)
        if unicodedata.combining(c) and out and out[-1].isascii():  # a mark on a Latin letter
            continue
        out.append(c)
    return unicodedata.normalize("NFC", "".join(out))


# Arabic harakat (vowel signs, tanwin, shadda, sukun, ...) and the superscript alef: written in vocalised text (the
# Quran, children's books, names spelled out), left out of ordinary writing
_ARABIC_MARKS = "".join(map(chr, [*range(0x064B, 0x0660), 0x0670]))
_NO_ARABIC_MARKS = str.maketrans("", "", _ARABIC_MARKS)

FOLD_VERSION = 5
"""The fold of the alias keys a store writes (meta ``folds``): 1 Latin accents (:func:`fold_accents`), 2 also
Greek accents and Arabic harakat (:func:`fold_key_v2`), 3 also every apostrophe look-alike read as "'"
(:func:`fold_key_v3`, ``APOSTROPHES``), 4 also the Hebrew geresh and gershayim read as "'" and '"'
(:func:`fold_key_v4`, ``HEBREW_MARKS``), 5 also without the characters that do not show (:func:`fold_key`,
``IGNORABLES``: soft hyphens of text taken from PDFs, zero-width spaces and joiners, direction marks). A store keeps
the version it was folded with: read-only it is read with that fold (its results do not change); opened for an
update, it is folded again (one pass)."""

# Unicode's default-ignorable code points of the Basic Multilingual Plane: the soft hyphen (PDF and typeset text
# breaks words with it: "Ber\xadlin"), the combining grapheme joiner, the Arabic letter mark, the Hangul fillers, the
# Khmer inherent vowels, the Mongolian free variation selectors and vowel separator, zero-width space, non-joiner and
# joiner, the left-to-right and right-to-left marks, embeddings and isolates, the word joiner and invisible
# operators, the variation selectors and the zero-width no-break space (BOM). Fold version 5 drops them: a name
# written with one matches the name without (Persian "می‌خواهم" written with its zero-width non-joiner matches the one
# written without, as search engines match them)
IGNORABLES = "".join(map(chr, [0xAD, 0x34F, 0x61C, 0x115F, 0x1160, 0x17B4, 0x17B5, *range(0x180B, 0x1810),
                                *range(0x200B, 0x2010), *range(0x202A, 0x202F), *range(0x2060, 0x2070), 0x3164,
                                *range(0xFE00, 0xFE10), 0xFEFF, 0xFFA0]))
_IGNORABLE = re.compile(f"[{re.escape(IGNORABLES)}]")


def _fold_marks(key: str) -> str:
    """``key`` without the marks of its Latin and Greek letters and without Arabic harakat (see :func:`fold_key`)."""
    out: list[str] = []
    for c in unicodedata.normalize("NFD", key.translate(_NO_ARABIC_MARKS)).translate(_LATIN_FOLDS):
        # a mark on a Latin letter, or on a Greek one (tonos, dialytika, the breathings and accents of polytonic)
        if unicodedata.combining(c) and out and (out[-1].isascii() or "\u0370" <= out[-1] <= "\u03ff"):
            continue
        out.append(c)
    return unicodedata.normalize("NFC", "".join(out))


def fold_key_v2(key: str) -> str:
    """:func:`fold_key` without the apostrophes: the fold of stores written with fold version 2."""
    if key.isascii() or _unfoldable(key):
        return key
    return _fold_marks(key)


def fold_key(key: str) -> str:
    """:func:`fold_key_v4`, and without the characters that do not show (``IGNORABLES``): "par\u200bis" and
    "ber\xadlin" -> "paris", "berlin". The fold of the stores written now (``FOLD_VERSION``)."""
    key = fold_key_v4(key)
    if key.isascii() or _IGNORABLE.search(key) is None:
        return key
    return " ".join(_IGNORABLE.sub("", key).split())


def fold_key_v4(key: str) -> str:
    """An alias key (:func:`normalize_alias`) without the accents of its Latin and Greek letters and without Arabic
    harakat, every apostrophe look-alike written "'": "zürich" -> "zurich", "łódź" -> "lodz", "αθήνα" -> "αθηνα"
    (Greek capitals are written without accents: "ΑΘΗΝΑ"), "مُحَمَّد" -> "محمد", "o’brien" and "oʼbrien" ->
    "o'brien", "côte d’ivoire" -> "cote d'ivoire" (``APOSTROPHES``), and the Hebrew geresh and gershayim written
    "'" and '"': "ג׳ורג׳" -> "ג'ורג'", "ארה״ב" -> 'ארה"ב' (``HEBREW_MARKS``). Other marks stay ("й" is another
    letter than "и", Hindi vowel signs are vowels), and so do the Arabic letters with hamza or madda ("أ" is not
    folded to "ا"). An ASCII key is its own fold unless it holds a backtick."""
    key = fold_key_v3(key)
    return key.translate(_HEBREW_MARKS) if ("\u05f3" in key or "\u05f4" in key) else key


def fold_key_v3(key: str) -> str:
    """:func:`fold_key` without the Hebrew marks: the fold of stores written with fold version 3."""
    if key.isascii():
        return key.replace("`", "'") if "`" in key else key
    if _unfoldable(key, APOSTROPHES):
        return key
    key = _TO_APOSTROPHE.sub("'", key)
    if "\u0301" in key:
        key = _SPACING_ACUTE.sub(_spacing_acute, key)
    return key if key.isascii() else _fold_marks(key)


_FOLDS = {1: fold_accents, 2: fold_key_v2, 3: fold_key_v3, 4: fold_key_v4, 5: fold_key}


def _holds_any_sql(chars: str) -> str:
    """An SQL condition true where the alias key ``norm`` holds one of ``chars`` that a key can hold (those NFKC
    keeps): ASCII ones by ``instr``; the others grouped by their UTF-8 bytes before the last, a group with more
    than one character tested by those bytes first (one byte comparison, then its characters), a lone one by its
    bytes (``’ ‘ ‛ ′`` share E2 80, ``ʼ ʻ ʹ`` CA)."""
    parts, groups = [], {}
    for c in dict.fromkeys(chars):
        if unicodedata.normalize("NFKC", c) != c:
            continue
        if c.isascii():
            parts.append("instr(norm, '" + c.replace("'", "''") + "')")
        else:
            groups.setdefault(c.encode()[:-1], []).append(c)
    for lead, cs in groups.items():
        if len(cs) == 1:
            parts.append(f"instr(CAST(norm AS BLOB), X'{cs[0].encode().hex().upper()}')")
        else:
            any_of = " OR ".join(f"instr(norm, '{c}')" for c in cs)
            parts.append(f"(instr(CAST(norm AS BLOB), X'{lead.hex().upper()}') AND ({any_of}))")
    return "(" + " OR ".join(parts) + ")"


# what each fold version folded first, for the warning on a store read with an older one: (a description, a query
# that finds an alias key it would fold, or match otherwise, that an older fold does not; its parameters)
_FOLD_NEWS = {
    # a key that begins with a Greek or Arabic letter: ranges of the key index
    2: ("Greek accents and Arabic harakat were folded (ΑΘΗΝΑ, محمد written without them)",
        "SELECT 1 FROM aliases WHERE (norm >= ? AND norm < ?) OR (norm >= ? AND norm < ?) OR (norm >= ? AND norm < ?) "
        "LIMIT 1", ("\u0370", "\u0400", "\u1f00", "\u2000", "\u0600", "\u0700")),
    # a key with an apostrophe, "'" too (text with "’" finds it only with fold 3; most Latin-script KBs hold one,
    # found at once): one may be anywhere in a key, so keys are read, those of the first 250,000 entities at most
    # (the range of the rid index: 0.45 s a million keys when none has one; GLOB '*[...]*' is twice as slow), the
    # condition generated from APOSTROPHES (_holds_any_sql: lead bytes before characters; an acute is a space and a
    # combining acute in a key, NFKC)
    3: (f"apostrophe look-alikes ({' '.join(APOSTROPHES)}) were read as \"'\" (O’Brien written O'Brien, or the "
        "other way round)",
        "SELECT 1 FROM aliases WHERE rid < (SELECT min(rid) FROM aliases) + 250000 AND (instr(norm, ' \u0301') "
        f"OR (norm >= ? AND norm < ?) OR {_holds_any_sql(chr(39) + APOSTROPHES)}) LIMIT 1",
        ("\u0301", "\u0302")),
    # a key that begins with a Hebrew letter (a range of the key index, as for version 2)
    4: ("the Hebrew geresh and gershayim were read as \"'\" and '\"' (ארה״ב written ארה\"ב, ג׳ורג׳ written ג'ורג')",
        "SELECT 1 FROM aliases WHERE norm >= ? AND norm < ? LIMIT 1", ("\u05d0", "\u05f0")),
    # a key holding a character that does not show: anywhere in a key, so keys are read as for version 3
    5: ("characters that do not show (soft hyphen, zero-width space and joiners, direction marks) were dropped "
        "(Ber\u00adlin written Berlin, or the other way round)",
        f"SELECT 1 FROM aliases WHERE rid < (SELECT min(rid) FROM aliases) + 250000 AND ({_holds_any_sql(IGNORABLES)}) "
        "LIMIT 1", ()),
}


def written_as_name(text: str) -> bool:
    """Every word capitalised, written in a script without letter case (Arabic, Devanagari, Hebrew...) or not a word
    ("Elie Wiesel", "J. R. R. Tolkien", "عبد الفتاح السيسي"), not a phrase ("University of Pisa")."""
    return all(not w[:1].islower() for w in text.split())


HUMAN = "Q5"

# Scripts whose names put the family name first or are written without spaces (Han, Kana, Hangul, Thai, Lao,
# Myanmar, Khmer): their last word is no last name
_NO_LAST_NAME = ((0x0E00, 0x0EFF), (0x1000, 0x109F), (0x1100, 0x11FF), (0x1780, 0x17FF), (0x2E80, 0xA4CF),
                 (0xA960, 0xA97F), (0xAC00, 0xD7FF), (0xF900, 0xFAFF), (0xFF66, 0xFFDC), (0x20000, 0x3FFFF))


def _letters(word: str) -> bool:
    """A letter, then letters and combining marks only (Hindi "मोदी": its vowel signs are marks, not letters)."""
    return word[:1].isalpha() and all(c.isalpha() or unicodedata.category(c)[0] == "M" for c in word)


def name_part(e: Entity) -> str | None:
    """The normalised last name under which a person can be found by a mention of it alone ("Wiesel" -> Elie
    Wiesel), or None: the label (without a trailing "(...)") written as a name of 2-4 words whose last word is
    alphabetic (letters and their marks) with at least 3 characters, not all capitals (not "Louis XIV"); an entity
    with types must be a human (Q5), one without any (a KB whose source gives none) is taken on its label alone. A
    label in a script without letter case (Arabic "عبد الفتاح السيسي", Hindi "नरेंद्र मोदी") cannot show that it is
    a name, so it needs the type human; one in Han, Kana, Hangul or Thai gets none (the family name comes first, or
    words are not spaced)."""
    if e.types and HUMAN not in e.types:
        return None
    label = e.label.split(" (", 1)[0].strip()
    words = label.split()
    if not 2 <= len(words) <= 4 or not written_as_name(label):
        return None
    if not any(c.isupper() or c.islower() for c in label) and (  # no letter case
            HUMAN not in e.types or any(a <= ord(c) <= b for c in label for a, b in _NO_LAST_NAME)):
        return None
    last = words[-1]
    return normalize_alias(last) if len(last) >= 3 and _letters(last) and not last.isupper() else None


def normalized_counts(counts: dict[str, float]) -> dict[str, float]:
    """Alias counts keyed by normalised form; forms that normalise alike ("England", "ENGLAND") add up."""
    out: dict[str, float] = {}
    for name, n in counts.items():
        key = normalize_alias(name)
        if key:
            out[key] = out.get(key, 0.0) + float(n)
    return out


class TextTemplate:
    """Renders an entity's text for the encoder, e.g. ``"{label}: {description}"``; dangling separators of empty
    fields are trimmed so "Paris" with no description embeds as "Paris", not "Paris: "."""

    FIELDS = ("id", "label", "description", "types", "aliases")

    def __init__(self, template: str) -> None:
        import string

        names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
        bad = [f for f in names if f not in self.FIELDS]
        if bad or not names:
            raise ConfigError(f"text template {template!r} uses unknown field(s) {bad}" if bad
                              else f"text template {template!r} uses no field", where="template",
                              fix=f"use fields among {{{'}, {'.join(self.FIELDS)}}}, e.g. '{{label}}: {{description}}'")
        self.template = template

    def render(self, e: Entity) -> str:
        text = self.template.format(id=e.id, label=e.label, description=e.description, types=", ".join(e.types),
                                    aliases=", ".join(e.aliases))
        return text.strip().rstrip(":;,-|").strip()


try:  # orjson decodes the stored JSON columns several times faster (linking reads ~10k records per 100 documents)
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - orjson is a dependency; the standard library is the fallback
    _loads = json.loads


def _row_to_entity(row: Sequence[Any]) -> Entity:
    _, eid, label, desc, pop, types, aliases, data, _ = row
    d = _loads(data)
    return Entity._trusted({"id": eid, "label": label, "aliases": _loads(aliases),
                            "alias_counts": d.get("alias_counts", {}), "description": desc, "types": _loads(types),
                            "popularity": pop, "labels": d.get("labels", {}), "descriptions": d.get("descriptions", {}),
                            "aliases_by_lang": d.get("aliases_by_lang", {}), "extra": d.get("extra", {})})


class SpooledEntities(Sequence[Entity]):
    """Entities kept in a file of their own in ``folder`` instead of memory (the changed records a sync read from
    its source, which may be most of a large one): set and dropped by id as a dict is (the last record of an id
    counts), then read back in the order written, any number of times; ``close()`` deletes the file. Pickled, so a
    record reads back exactly as it was read (a JSON round trip would turn an ``extra`` datetime into other text).
    The file is written and read through the one descriptor ``mkstemp`` opened, and unlinked at once where the
    system allows it (not on Windows): no one who can write in a shared KB folder can swap in a pickle of theirs."""

    def __init__(self, folder: Path) -> None:
        import tempfile

        from glinker.locks import pid_alive

        for old in Path(folder).glob(".sync-spool-*-*.pkl"):  # a killed sync's file: its process is gone
            pid = old.name.split("-")[2]
            if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
                old.unlink(missing_ok=True)
        fd, name = tempfile.mkstemp(dir=folder, prefix=f".sync-spool-{os.getpid()}-", suffix=".pkl")
        self.path = Path(name)
        self._fd = fd
        if os.name != "nt":  # nameless from now on: only this descriptor reaches it (and it goes with the process)
            self.path.unlink()
        self._f: Any = os.fdopen(os.dup(fd), "wb")
        self._n = 0
        self._last: dict[str, int | None] = {}  # id -> the place of its record to use; None: its last was dropped
        self._len = 0

    def __setitem__(self, key: str, e: Entity) -> None:
        import pickle

        pickle.dump(e, self._f, protocol=pickle.HIGHEST_PROTOCOL)
        self._last[key] = self._n
        self._n += 1

    def pop(self, key: str, default: Any = None) -> Any:
        if self._last.get(key) is not None:
            self._last[key] = None
        return default

    def written(self) -> None:
        """Reading the source is done: the file is complete."""
        self._f.close()
        self._len = sum(v is not None for v in self._last.values())

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Entity]:
        import pickle

        if self._fd is None:
            raise ValueError("the spooled entities are closed")
        with io.BufferedReader(_PositionalReader(self), 1 << 16) as f:  # an offset of its own per iteration
            for n in range(self._n):
                e = pickle.load(f)
                if self._last.get(e.id) == n:
                    yield e

    def __getitem__(self, i: Any) -> Any:
        raise TypeError("SpooledEntities are read in order (iterate them)")

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> SpooledEntities:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _PositionalReader(io.RawIOBase):
    """Reads a spool's descriptor from its start with ``pread`` (an offset of its own; closing it leaves the
    descriptor); a ValueError once the spool is closed (its descriptor number may be another file's by then)."""

    def __init__(self, spool: SpooledEntities) -> None:
        super().__init__()
        self.spool, self.pos = spool, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        fd = self.spool._fd
        if fd is None:
            raise ValueError("the spooled entities were closed while being read")
        if hasattr(os, "pread"):
            data = os.pread(fd, len(b), self.pos)
        else:  # pragma: no cover - Windows: one reader at a time there
            os.lseek(fd, self.pos, os.SEEK_SET)
            data = os.read(fd, len(b))
        b[: len(data)] = data
        self.pos += len(data)
        return len(data)


def _row_values(e: Entity, template: TextTemplate) -> tuple[Any, ...]:
    """An entity's values as the entities table stores them: (id, label, description, popularity, types, aliases,
    data, text_hash)."""
    text = template.render(e)
    h = hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()
    d: dict[str, Any] = {"labels": e.labels, "descriptions": e.descriptions, "aliases_by_lang": e.aliases_by_lang,
                         "extra": e.extra}
    if e.alias_counts:
        d["alias_counts"] = e.alias_counts
    return (e.id, e.label, e.description, float(e.popularity), json.dumps(e.types, ensure_ascii=False),
            json.dumps(e.aliases, ensure_ascii=False), json.dumps(d, ensure_ascii=False, default=str), h)


def _chunks(seq: Sequence[Any], n: int = _SQL_VARS) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def sqlite_uri(path: str | os.PathLike, query: str = "") -> str:
    """An SQLite ``file:`` URI of ``path`` with its special characters escaped: a folder named ``kb#1`` or ``b?x``
    (the URI cut at the ``#`` or ``?`` opened, or created, another file, and dropped ``mode=ro``)."""
    uri = Path(path).absolute().as_uri()
    return f"{uri}?{query}" if query else uri


def _connect(uri: str) -> sqlite3.Connection:
    """A connection to a store, shared between threads (SQLite serialises the calls on it)."""
    return sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)


_STORES: weakref.WeakSet[EntityStore] = weakref.WeakSet()
"""Every open store, for a forked child: SQLite holds a mutex of its own on a connection during each call, which
glinker's locks (:mod:`glinker.locks`) cannot reset; a process forked while another of its threads is inside a KB
read (a batch's look-ups) gives the child that mutex held by a thread it does not have, and its first look-up waits
forever. SQLite says not to use a connection across fork() anyway: in a forked child every store opens a connection
of its own at its first use (``os.register_at_fork`` swaps each store's connection for a :class:`_OpenOnUse`, while
the child has one thread: nothing is added to a look-up, nothing is opened in a child that reads no KB)."""

_INHERITED: list[sqlite3.Connection] = []
"""In a forked child: the connections it inherited, kept from being closed or freed (closing one takes its mutex)."""

_OPENING = fork_safe_lock()  # a forked child's threads opening a store's connection at once: one opens it


class _OpenOnUse:
    """A store's connection in a forked child until its first use, which opens the store's own (see ``_STORES``)."""

    __slots__ = ("store",)

    def __init__(self, store: EntityStore) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store._reopen(), name)


class _ClosedUnused:
    """The connection of a store closed in a forked child before any use there: nothing was opened, nothing is."""

    __slots__ = ()

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        raise sqlite3.ProgrammingError("Cannot operate on a closed database.")


def _reopen_in_child() -> None:
    for store in list(_STORES):
        if not isinstance(store.db, _OpenOnUse):  # (a store not used since a fork before: the same one)
            store._inherited = store.db
            _INHERITED.append(store.db)
            store.db = _OpenOnUse(store)  # type: ignore[assignment]


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_reopen_in_child)


def _said(fn: Any) -> Any:
    """``fn`` (a method of :class:`EntityStore`) with the SQLite errors that say something of the file (a damaged
    store, a full disk, read-only storage) raised as the KBError of :func:`store_error`, naming the store."""
    import inspect

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def rows(self: EntityStore, *args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(self, *args, **kwargs)
            except sqlite3.Error as e:
                _raise_said(self, e)
        return rows

    @functools.wraps(fn)
    def call(self: EntityStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except sqlite3.Error as e:
            _raise_said(self, e)
    return call


def _raise_said(store: EntityStore, e: sqlite3.Error) -> None:
    """Raise ``e`` as the KBError that says it (:func:`_store_error_of`), or as itself."""
    err = _store_error_of(store, e)
    if err is None:
        raise e
    raise err from e


def _store_error_of(store: EntityStore, e: sqlite3.Error) -> KBError | None:
    """:func:`store_error`, except for a write through a store opened read-only: that is the caller's mistake (a KB
    opened without ``writable=True``), not read-only storage."""
    if getattr(store, "readonly", False) and ("readonly" in str(e).lower() or "read-only" in str(e).lower()):
        return KBError("the KB was opened read-only: it cannot be written through this object", where=str(store.path),
                       fix="open it with KB.open(path, writable=True) (or KB.update(path)) to write")
    return store_error(e, store.path)


class EntityStore:
    """SQLite-backed entity records + alias index. Writes happen in explicit transactions. SQLite errors that say
    something of the file (damaged, disk full, read-only) are KBErrors naming it (:func:`store_error`)."""

    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly and not self.path.is_file():
            raise KBError(f"entity store not found: {self.path}", where=str(self.path),
                          fix="build the KB with `glinker kb build`")
        uri = sqlite_uri(self.path, "mode=ro") if readonly else sqlite_uri(self.path)
        try:
            self.db = _connect(uri)
            if readonly:
                try:
                    self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()
                except sqlite3.OperationalError:
                    # a store left in WAL mode (an interrupted writer, an older glinker) on read-only storage: its
                    # -shm file cannot be made there; nothing writes it, so read it as an immutable file
                    self.db.close()
                    uri += "&immutable=1"
                    self.db = _connect(uri)
                    self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            # what a forked child opens again (_reopen_in_child): this file (by its absolute path, as it was opened;
            # a writable one is never created there)
            st = self.path.stat()
            self._file = (str(self.path.absolute()), uri.split("?", 1)[1] if readonly else "mode=rw",
                          (st.st_dev, st.st_ino))
        except (sqlite3.Error, OSError) as e:
            said = store_error(e, self.path) or (write_error(e, self.path) if not readonly else None)
            if said is not None:
                raise said from None
            raise KBError(f"cannot open entity store: {e}", where=str(self.path),
                          fix="check the path and its permissions") from None
        self.readonly = readonly
        self.migrated = False  # a writable open brought an older store up to date
        try:
            self._setup()
        except BaseException:
            self.db.close()
            raise
        _STORES.add(self)

    @_said
    def _setup(self) -> None:
        """The store's settings, schema and folds, once it is open (a damaged file is said as such here)."""
        readonly = self.readonly
        if not readonly:
            self.db.execute("PRAGMA journal_mode=WAL")  # (kept in the file: a forked child does not set it again)
        self._configure(self.db)
        if not readonly:
            self.db.executescript(SCHEMA)
        # a store written before alias counts existed has no such table (read-only opens cannot add it)
        self.has_alias_counts = self._has_table("alias_counts")
        self.has_link_stats = self._has_table("link_stats")
        self.has_name_parts = self._has_table("name_parts")
        version = self._fold_version()
        if not readonly and version < FOLD_VERSION:
            # a new store, one written before folded keys existed or with an older fold: from now on it has them
            self._add_folds(version)
            version = FOLD_VERSION
        # read-only, a store written before folded keys existed has none: they are not used; one folded with an
        # older fold is read with that fold, so that it answers as it did (see FOLD_VERSION)
        self.has_folds = version > 0
        self.fold_version = version
        # the fold of this store's folded keys (fold_key, or an older fold for an older store read-only): a key is
        # folded with it before it is looked up among them
        self.fold = _FOLDS.get(version, fold_key)
        if readonly and 0 < version < FOLD_VERSION and (missed := self._missed_folds(version)):
            log.warning("%s: this KB's alias keys were folded before %s: such names are not matched as they are in "
                        "a KB built now; any update folds them again (`glinker kb add`, `glinker kb link-stats`), or "
                        "rebuild it", self.path, ", and before ".join(missed))

    def _configure(self, db: sqlite3.Connection) -> None:
        """The settings of each connection to the store (the first, and a forked child's)."""
        if not self.readonly:
            db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA cache_size=-65536")

    def _reopen(self) -> sqlite3.Connection:
        """In a forked child, at the store's first use there: a connection of its own to the same file, opened as
        the first was (see ``_STORES``); the inherited one is never closed nor freed (``_INHERITED``). Where the file
        is no longer there (a KB updated since: its older generations are removed), or another file is, the child
        reads through the inherited connection, as it did before, with a warning."""
        with _OPENING:
            if not isinstance(self.db, _OpenOnUse):
                return self.db
            path, mode, ident = self._file
            try:
                st = os.stat(path)
                if (st.st_dev, st.st_ino) != ident:
                    raise FileNotFoundError("another file is there now")
                db = _connect(sqlite_uri(path, mode))
                self._configure(db)
            except (OSError, sqlite3.Error) as e:
                log.warning("%s: cannot open the entity store again in this forked child (%s): it reads through the "
                            "connection of the parent, which waits forever if a thread of the parent was inside a KB "
                            "read at the fork", self.path, e)
                db = self._inherited
            self.db = db  # (from here on, as fast as the parent's)
            return db

    def _fold_version(self) -> int:
        """The fold version of the stored folded keys: 0 none (written before they existed), 1 for ``true``
        (written before fold versions existed: Latin accents only), else the number stored."""
        v = self.get_meta("folds", False)
        return int(v) if isinstance(v, (bool, int)) else 0

    def _missed_folds(self, version: int) -> list[str]:
        """What the folds after ``version`` would match that this store's own fold does not, where its alias keys
        hold such names (``_FOLD_NEWS``): a key that begins with a Greek, Arabic or Hebrew letter, one with an
        apostrophe."""
        return [what for v, (what, query, args) in sorted(_FOLD_NEWS.items())
                if v > version and self.db.execute(query, args).fetchone() is not None]

    def _add_folds(self, version: int = 0) -> None:
        """The folded keys (:func:`fold_key`) of every alias already stored, in one pass; those of an older fold
        are replaced."""
        n = self.count()
        if n:  # a pass over every alias: said at the default log level, a big KB takes a while (once)
            if version:
                news = {2: "without Greek accents and Arabic harakat", 3: "with every apostrophe look-alike read as "
                        "\"'\"", 4: "with the Hebrew geresh and gershayim read as \"'\" and '\"'",
                        5: "without the characters that do not show (soft hyphens, zero-width spaces)"}
                log.warning("%s: folding the alias keys again, now also %s (once, one pass over its %d entities' "
                            "aliases)", self.path, ", ".join(w for v, w in news.items() if v > version), n)
            else:
                log.warning("%s: adding accent-folded alias keys to a store written before they existed (once, one "
                            "pass over its %d entities' aliases)", self.path, n)
            self.migrated = True
        with self.transaction():
            self.db.execute("DELETE FROM folded")
            cur = self.db.execute("SELECT norm, rid FROM aliases")
            while rows := cur.fetchmany(65536):
                self.db.executemany("INSERT OR IGNORE INTO folded(norm, rid) VALUES (?, ?)",
                                    [(f, rid) for norm, rid in rows if (f := fold_key(norm)) != norm])
            self.set_meta("folds", FOLD_VERSION)

    def _has_table(self, name: str) -> bool:
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None

    def close(self) -> None:
        """Close the connection: a writer checkpoints the WAL into the main file and leaves it a plain one-file
        database (rollback journal), so the KB opens read-only anywhere: read-only mounts, container images."""
        _STORES.discard(self)
        if isinstance(self.db, _OpenOnUse):  # a forked child that did not use it
            self.db = _ClosedUnused()  # type: ignore[assignment]
            return
        try:
            if not self.readonly:
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                try:
                    self.db.execute("PRAGMA journal_mode=DELETE")
                except sqlite3.OperationalError:  # another connection has it open: it stays in WAL mode until later
                    pass
        finally:  # closed even when the checkpoint fails (a full disk): the WAL keeps what was committed
            self.db.close()

    # -- meta ---------------------------------------------------------------------------------------------------
    def get_meta(self, key: str, default: Any = None) -> Any:
        """A JSON value from the meta table."""
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON value in the meta table (inside the caller's transaction, if any)."""
        self.db.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                        (key, json.dumps(value)))

    # -- writes -------------------------------------------------------------------------------------------------
    def upsert(self, entities: Iterable[Entity], template: TextTemplate, track_pending: bool,
               meta: dict[str, Any] | None = None) -> dict[str, int]:
        """Insert or update entities in one transaction; with ``track_pending`` journal the rids to (re)embed.

        Counts, one per id: added, updated (text changed -> re-embed), unchanged_text (records changed, same
        vector), same (records equal to the stored ones: not written); and repeated: records that repeat an id of
        the batch (the last record of an id is the one compared and kept)."""
        counts = {"added": 0, "updated": 0, "unchanged_text": 0, "same": 0, "repeated": 0}
        last: dict[str, Entity] = {}
        for e in entities:
            if e.id in last:
                counts["repeated"] += 1
            last[e.id] = e  # (a new id's row id is given in the order ids first appear)
        rows = [(e, _row_values(e, template)) for e in last.values()]
        if not rows:
            if meta:
                with self.transaction():
                    for k, v in meta.items():
                        self.set_meta(k, v)
            return counts
        with self.transaction():
            existing: dict[str, tuple[int, str]] = {}
            stored: dict[str, tuple[Any, ...]] = {}  # id -> its stored values, to skip records that did not change
            for rid, vals in self._stored_rows([r[1][0] for r in rows]).items():
                existing[vals[0]] = (rid, vals[-1])
                stored[vals[0]] = vals
            row = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name='entities'").fetchone()
            next_rid = int(row[0]) if row else 0
            final: dict[str, tuple[int, bool, Entity, tuple[Any, ...]]] = {}  # id -> (rid, is_new, entity, values)
            for e, vals in rows:  # one record per id
                old = existing.get(e.id)
                if old is None:
                    next_rid += 1
                    final[e.id] = (next_rid, True, e, vals)
                    counts["added"] += 1
                elif stored.get(e.id) == vals:
                    counts["same"] += 1  # nothing to write
                else:
                    final[e.id] = (old[0], False, e, vals)
                    counts["updated" if old[1] != vals[-1] else "unchanged_text"] += 1
            self.db.executemany("INSERT INTO entities(rid, id, label, description, popularity, types, aliases, data, "
                                "text_hash) VALUES (?,?,?,?,?,?,?,?,?)",
                                [(rid, *vals) for rid, new, _, vals in final.values() if new])
            updated = [(rid, vals) for rid, new, _, vals in final.values() if not new]
            self.db.executemany("UPDATE entities SET label=?, description=?, popularity=?, types=?, aliases=?, "
                                "data=?, text_hash=? WHERE rid=?", [(*vals[1:], rid) for rid, vals in updated])
            self.db.executemany("DELETE FROM aliases WHERE rid=?", [(rid,) for rid, _ in updated])
            self.db.executemany("DELETE FROM alias_counts WHERE rid=?", [(rid,) for rid, _ in updated])
            self.db.executemany("DELETE FROM name_parts WHERE rid=?", [(rid,) for rid, _ in updated])
            self.db.executemany("DELETE FROM folded WHERE rid=?", [(rid,) for rid, _ in updated])
            self.db.executemany("INSERT OR IGNORE INTO name_parts(norm, rid) VALUES (?, ?)",
                                sorted((n, rid) for rid, _, e, _ in final.values() if (n := name_part(e))))
            alias_rows = sorted({(n, rid) for rid, _, e, _ in final.values()
                                 for n in map(normalize_alias, e.names()) if n})  # key order: fast B-tree inserts
            self.db.executemany("INSERT OR IGNORE INTO aliases(norm, rid) VALUES (?, ?)", alias_rows)
            if self.has_folds:
                self.db.executemany("INSERT OR IGNORE INTO folded(norm, rid) VALUES (?, ?)",
                                    sorted({(f, rid) for n, rid in alias_rows if (f := self.fold(n)) != n}))
            self.db.executemany("INSERT INTO alias_counts(norm, rid, n) VALUES (?, ?, ?)",
                                sorted((k, rid, n) for rid, _, e, _ in final.values()
                                       for k, n in normalized_counts(e.alias_counts).items()))
            if track_pending:
                changed = [(rid,) for rid, new, _, vals in final.values()
                           if new or existing[vals[0]][1] != vals[-1]]
                self.db.executemany("INSERT OR REPLACE INTO pending(rid, op) VALUES (?, 'add')", changed)
            for k, v in (meta or {}).items():
                self.set_meta(k, v)
        return counts

    def _stored_rows(self, ids: Sequence[str]) -> dict[int, tuple[Any, ...]]:
        """rid -> the stored values (as :func:`_row_values` makes them) of the entities with these ids."""
        out: dict[int, tuple[Any, ...]] = {}
        for part in _chunks(list(ids)):
            q = (f"SELECT rid, id, label, description, popularity, types, aliases, data, text_hash FROM entities "
                 f"WHERE id IN ({','.join('?' * len(part))})")
            for rid, *vals in self.db.execute(q, list(part)):
                out[int(rid)] = tuple(vals)
        return out

    def new_texts(self, entities: Iterable[Entity], template: TextTemplate) -> int:
        """How many of ``entities`` an update would embed: the new ones and those whose text (by ``template``)
        differs from the stored one (a changed popularity or alias is stored, not embedded again)."""
        n = 0
        part: list[Entity] = []

        def count() -> int:  # a chunk at a time, only the text hashes read back: memory flat for a spooled sync
            q = f"SELECT id, text_hash FROM entities WHERE id IN ({','.join('?' * len(part))})"
            stored = dict(self.db.execute(q, [e.id for e in part]).fetchall())
            return sum(stored.get(e.id) != _row_values(e, template)[-1] for e in part)

        for e in entities:
            part.append(e)
            if len(part) >= _SQL_VARS:
                n += count()
                part.clear()
        return n + (count() if part else 0)

    def changed(self, entities: Iterable[Entity], template: TextTemplate,
                chunk: int = 2000, spool: Path | None = None) -> tuple[Sequence[Entity], set[str]]:
        """Read a source against the store without writing: the entities that are new or differ from their stored
        record (the last record of a repeated id counts), and every id the source holds. With ``spool`` (a folder),
        the changed entities are kept in a file there rather than in memory (:class:`SpooledEntities`: close it)."""
        changed: dict[str, Entity] | SpooledEntities = {} if spool is None else SpooledEntities(spool)
        seen: set[str] = set()
        repeated: list[str] = []
        buf: list[Entity] = []

        def check() -> None:
            stored = {v[0]: v for v in self._stored_rows([e.id for e in buf]).values()}
            for e in buf:
                if stored.get(e.id) != _row_values(e, template):
                    changed[e.id] = e
                else:
                    changed.pop(e.id, None)
            buf.clear()

        try:
            for e in entities:
                if e.id in seen:
                    repeated.append(e.id)
                seen.add(e.id)
                buf.append(e)
                if len(buf) >= chunk:
                    check()
            check()
        except BaseException:
            if isinstance(changed, SpooledEntities):
                changed.close()  # a source that failed mid-read leaves no file behind
            raise
        if repeated:  # e.g. a SQL query joining an alias table: the last record of each id is kept, the rest lost
            log.warning("KB %s: %d source records repeat an id (the last record of each is kept; first ones: %s); "
                        "a SQL source with several aliases per entity: use an alias table (alias_table=...), not a "
                        "JOIN",
                        self.path.parent.parent, len(repeated), ", ".join(dict.fromkeys(repeated[:5])))
        if isinstance(changed, SpooledEntities):
            changed.written()
            return changed, seen
        return list(changed.values()), seen

    def delete(self, ids: Sequence[str], track_pending: bool) -> list[str]:
        """Remove entities (and their aliases) by id in one transaction; returns the ids that were present."""
        removed: list[str] = []
        with self.transaction():
            for part in _chunks(list(ids)):
                found = self.db.execute(f"SELECT id, rid FROM entities WHERE id IN ({','.join('?' * len(part))})",
                                        list(part)).fetchall()
                for eid, rid in found:
                    self.db.execute("DELETE FROM entities WHERE rid=?", (rid,))
                    self.db.execute("DELETE FROM aliases WHERE rid=?", (rid,))
                    self.db.execute("DELETE FROM alias_counts WHERE rid=?", (rid,))
                    self.db.execute("DELETE FROM name_parts WHERE rid=?", (rid,))
                    self.db.execute("DELETE FROM folded WHERE rid=?", (rid,))
                    if track_pending:
                        self.db.execute("INSERT OR REPLACE INTO pending(rid, op) VALUES (?, 'del')", (rid,))
                    removed.append(eid)
        return removed

    def transaction(self) -> _Tx:
        """``with store.transaction():`` — BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error."""
        return _Tx(self)

    def pending(self) -> list[tuple[int, str]]:
        """Journaled index changes (rid, 'add'|'del') not yet applied to the vector index."""
        return [(int(r), op) for r, op in self.db.execute("SELECT rid, op FROM pending ORDER BY rid")]

    def clear_pending(self, rids: Sequence[int]) -> None:
        """Forget journal entries once the index holding them is safely on disk."""
        with self.transaction():
            for part in _chunks(list(rids)):
                self.db.execute(f"DELETE FROM pending WHERE rid IN ({','.join('?' * len(part))})", list(part))

    # -- reads --------------------------------------------------------------------------------------------------
    def all_ids(self) -> set[str]:
        """Every entity id (for a sync with its source)."""
        return {r[0] for r in self.db.execute("SELECT id FROM entities")}

    def count(self) -> int:
        """Number of entities."""
        return int(self.db.execute("SELECT COUNT(*) FROM entities").fetchone()[0])

    def alias_count(self) -> int:
        """Number of (alias, entity) pairs."""
        return int(self.db.execute("SELECT COUNT(*) FROM aliases").fetchone()[0])

    def get(self, ids: Sequence[str]) -> list[Entity]:
        """Entities by id, in the order given; unknown ids are skipped."""
        found: dict[str, Entity] = {}
        for part in _chunks(list(dict.fromkeys(ids))):
            for row in self.db.execute(f"SELECT * FROM entities WHERE id IN ({','.join('?' * len(part))})", list(part)):
                found[row[1]] = _row_to_entity(row)
        return [found[i] for i in ids if i in found]

    def rids_for_ids(self, ids: Sequence[str]) -> dict[str, int]:
        """Map entity ids to their FAISS ids (rids); unknown ids are absent from the result."""
        out: dict[str, int] = {}
        for part in _chunks(list(dict.fromkeys(ids))):
            out.update((e, int(r)) for e, r in self.db.execute(
                f"SELECT id, rid FROM entities WHERE id IN ({','.join('?' * len(part))})", list(part)))
        return out

    def ids_for_rids(self, rids: Sequence[int]) -> dict[int, str]:
        """Map FAISS ids (rids) to entity ids; rids no longer present are absent from the result."""
        out: dict[int, str] = {}
        uniq = list({int(r) for r in rids if r >= 0})
        for part in _chunks(uniq):
            out.update(self.db.execute(f"SELECT rid, id FROM entities WHERE rid IN ({','.join('?' * len(part))})",
                                       list(part)).fetchall())
        return out

    def lookup_alias(self, name: str) -> list[str]:
        """Every entity whose label or alias normalises to ``name``'s key, most popular first."""
        if not isinstance(name, str):
            raise DataError(f"an alias is a string, not {type(name).__name__}", where="lookup_alias",
                            fix="e.g. kb.lookup_alias('Paris')")
        key = normalize_alias(name)
        return [r[0] for r in self.db.execute(
            "SELECT e.id FROM aliases a JOIN entities e ON e.rid=a.rid WHERE a.norm=? "
            "ORDER BY e.popularity DESC, e.id", (key,))]

    def labels_of_alias(self, norm: str) -> list[str]:
        """The labels of every entity named by a normalised key (no record is decoded); a key found only without
        accents gives the labels of the entities it finds that way ("cafe" -> café)."""
        found = [r[0] for r in self.db.execute(
            "SELECT e.label FROM aliases a JOIN entities e ON e.rid=a.rid WHERE a.norm=?", (norm,))]
        if found or not self.has_folds:
            return found
        fold = self.fold(norm)
        return [r[0] for r in self.db.execute(
            "SELECT e.label FROM folded f JOIN entities e ON e.rid=f.rid WHERE f.norm=? UNION ALL "
            "SELECT e.label FROM aliases a JOIN entities e ON e.rid=a.rid WHERE a.norm=? AND ?<>?",
            (fold, fold, fold, norm))]

    def lookup_norms(self, norms: Sequence[str]) -> dict[str, list[str]]:
        """Entity ids for several normalised keys at once (key -> ids, most popular first)."""
        return self._ids_by_norm("aliases", norms)

    def _ids_by_norm(self, table: str, norms: Sequence[str]) -> dict[str, list[str]]:
        """key -> ids of the entities a (norm, rid) table files under it, most popular first."""
        out: dict[str, list[str]] = {}
        for part in _chunks(list(dict.fromkeys(norms))):
            q = (f"SELECT a.norm, e.id FROM {table} a JOIN entities e ON e.rid=a.rid WHERE a.norm IN "
                 f"({','.join('?' * len(part))}) ORDER BY e.popularity DESC, e.id")
            for norm, eid in self.db.execute(q, list(part)):
                out.setdefault(norm, []).append(eid)
        return out

    def lookup_folded(self, norms: Sequence[str]) -> dict[str, list[str]]:
        """Entity ids for keys compared without accents (:func:`fold_key`): "zurich" finds Zürich, "zürich" finds
        an entity named only "Zurich". Key -> ids, most popular first; {} for a store built before folded keys."""
        if not self.has_folds:
            return {}
        folds = {n: self.fold(n) for n in norms}
        plain = self._ids_by_norm("aliases", sorted({f for n, f in folds.items() if f != n}))
        accented = self._ids_by_norm("folded", sorted(set(folds.values())))
        out: dict[str, list[str]] = {}
        for n, f in folds.items():
            ids = list(dict.fromkeys([*(plain.get(f, []) if f != n else []), *accented.get(f, [])]))
            if ids:
                out[n] = ids
        return out

    def folded_vocab(self) -> list[str]:
        """Every accent-folded key that differs from its alias key (for dictionary matching without accents)."""
        return [r[0] for r in self.db.execute("SELECT DISTINCT norm FROM folded")] if self.has_folds else []

    def lookup_name_parts(self, norms: Sequence[str]) -> dict[str, list[str]]:
        """People by normalised last name (:func:`name_part`): key -> ids, most popular first; {} for a store
        built before name parts existed."""
        return self._ids_by_norm("name_parts", norms) if self.has_name_parts else {}

    def name_part_count(self) -> int:
        """Number of (last name, entity) pairs (0 for a store built before name parts existed)."""
        return int(self.db.execute("SELECT COUNT(*) FROM name_parts").fetchone()[0]) if self.has_name_parts else 0

    def has_types(self) -> bool:
        """Whether any entity has types."""
        return self.db.execute("SELECT 1 FROM entities WHERE types != '[]' LIMIT 1").fetchone() is not None

    def alias_count_pairs(self) -> int:
        """Number of (alias, entity) pairs with a count (0 for a store without counts)."""
        if not self.has_alias_counts:
            return 0
        return int(self.db.execute("SELECT COUNT(*) FROM alias_counts").fetchone()[0])

    def prior(self, norms: Sequence[str]) -> dict[str, dict[str, float]]:
        """p(entity | mention) for normalised keys: key -> {entity id: count(key, e) / sum over e' of count(key, e')}.

        Keys without counts are absent; a store without alias counts (built before they existed) gives {}."""
        if not self.has_alias_counts:
            return {}
        counts: dict[str, dict[str, float]] = {}
        for part in _chunks(list(dict.fromkeys(norms))):
            q = (f"SELECT c.norm, e.id, c.n FROM alias_counts c JOIN entities e ON e.rid=c.rid WHERE c.norm IN "
                 f"({','.join('?' * len(part))})")
            for norm, eid, n in self.db.execute(q, list(part)):
                counts.setdefault(norm, {})[eid] = float(n)
        out: dict[str, dict[str, float]] = {}
        for norm, by_entity in counts.items():
            total = sum(by_entity.values())
            if total > 0:
                out[norm] = {eid: n / total for eid, n in by_entity.items()}
        return out

    def link_stats(self, norms: Sequence[str]) -> dict[str, tuple[int, int]]:
        """(linked, seen) for normalised keys that have link statistics; {} for a store without them."""
        if not self.has_link_stats:
            return {}
        out: dict[str, tuple[int, int]] = {}
        for part in _chunks(list(dict.fromkeys(norms))):
            q = f"SELECT norm, linked, seen FROM link_stats WHERE norm IN ({','.join('?' * len(part))})"
            out.update((n, (int(a), int(b))) for n, a, b in self.db.execute(q, list(part)))
        return out

    def link_stats_count(self) -> int:
        """Number of forms with link statistics."""
        return int(self.db.execute("SELECT COUNT(*) FROM link_stats").fetchone()[0]) if self.has_link_stats else 0

    def replace_link_stats(self, stats: dict[str, tuple[int, int]]) -> None:
        """Replace every form's link statistics in one transaction (all or nothing)."""
        with self.transaction():
            self.db.execute("DELETE FROM link_stats")
            self.db.executemany("INSERT INTO link_stats(norm, linked, seen) VALUES (?, ?, ?)",
                                ((k, int(a), int(b)) for k, (a, b) in sorted(stats.items())))

    def alias_vocab(self) -> list[str]:
        """Every distinct normalised alias (the fuzzy-matching vocabulary)."""
        return [r[0] for r in self.db.execute("SELECT DISTINCT norm FROM aliases")]

    def iter_texts(self, template: TextTemplate, after_rid: int = 0, batch: int = 8192,
                   rids: Sequence[int] | None = None) -> Iterator[tuple[list[int], list[str]]]:
        """(rids, texts) batches in rid order after ``after_rid`` (or for the given rids only)."""
        if rids is not None:
            for part in _chunks(sorted(rids)):
                rows = self.db.execute(f"SELECT * FROM entities WHERE rid IN ({','.join('?' * len(part))}) "
                                       "ORDER BY rid", list(part)).fetchall()
                if rows:
                    yield [r[0] for r in rows], [template.render(_row_to_entity(r)) for r in rows]
            return
        last = after_rid
        while True:
            rows = self.db.execute("SELECT * FROM entities WHERE rid>? ORDER BY rid LIMIT ?", (last, batch)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield [r[0] for r in rows], [template.render(_row_to_entity(r)) for r in rows]


for _name, _fn in list(vars(EntityStore).items()):  # every method but those that open or reopen the connection
    if callable(_fn) and not _name.startswith("__") and _name not in ("_setup", "_reopen", "_configure",
                                                                       "transaction"):
        setattr(EntityStore, _name, _said(_fn))
del _name, _fn


class _Tx:
    def __init__(self, store: EntityStore) -> None:
        self.store = store  # its connection at each step: in a forked child, never the inherited one

    def __enter__(self) -> None:
        self._run("BEGIN IMMEDIATE")

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        if et is None:
            self._run("COMMIT")
            return
        try:
            self.store.db.execute("ROLLBACK")
        except sqlite3.Error:  # (SQLite may have rolled back already: a full disk) the first error is the one said
            log.debug("ROLLBACK after an error failed", exc_info=True)

    def _run(self, sql: str) -> None:
        try:
            self.store.db.execute(sql)
        except sqlite3.Error as e:
            err = store_error(e, self.store.path)
            if err is None:
                raise
            raise err from e
