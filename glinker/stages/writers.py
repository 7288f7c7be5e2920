"""Output writers for linked documents: JSON, JSONL (append + resume) and a self-contained HTML page.

These are plain classes with ``write(batch)`` / ``close()`` (and context-manager support); wiring them as
pipeline stages is the registry's job. The HTML page has inline CSS and JS only (no external resource),
escapes every piece of document text, highlights linked mentions with the entity id, label and confidence
on hover, and styles NIL mentions differently.
"""

from __future__ import annotations

import html
import json
import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from glinker.io import (atomic_write, open_plain_file, read_done_ids, repair_jsonl_tail, resume_state, to_jsonable,
                        write_jsonl)

log = logging.getLogger(__name__)

__all__ = ["HTMLWriter", "JSONLWriter", "JSONWriter", "foreign_output", "read_done_ids", "render_html",
           "write_jsonl"]

NIL = "NIL"


class JSONLWriter:
    """Append linked documents to a JSONL file, one flush per batch; ``done_ids`` lists what is already there."""

    def __init__(self, path: str | Path, append: bool = True) -> None:
        self.path = Path(path)
        self.append = append
        self.written = 0
        if append:
            repair_jsonl_tail(self.path)
            st = resume_state(self.path)
            self.done_ids: set[str] = st.done_ids
            self.already = st.lines
        else:
            self.done_ids, self.already = set(), 0
        self._first = True

    def pending(self, docs: Iterable[Any]) -> list[Any]:
        """The documents of ``docs`` not written yet (by id), for resuming a run."""
        return [d for d in docs if _get(d, "id") is None or str(_get(d, "id")) not in self.done_ids]

    def write(self, batch: Sequence[Any]) -> int:
        """Write one batch and flush it; returns the number written."""
        append = self.append or not self._first
        n = write_jsonl(self.path, batch, append=append)
        self._first = False
        self.written += n
        for d in batch:
            if _get(d, "id") is not None:
                self.done_ids.add(str(_get(d, "id")))
        return n

    def close(self) -> None:
        """Nothing is buffered between batches; kept for a uniform writer API."""

    def __enter__(self) -> JSONLWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ArrayFile:
    """A file made of a fixed head, items joined by ``sep`` and a fixed tail, complete after every ``append``.

    A batch is appended by writing it over the tail, then the tail again, so each batch costs its own size (not the
    whole file's) and a crash leaves every earlier batch in a complete file. The file is created (head + tail)
    atomically when the writer opens it; with ``continue_existing`` a complete file of the same head and tail (one
    this writer made) is continued instead: its items are found by ``marker`` at the start of a line (every item
    starts a line), and those past the first ``keep`` are cut (written before an interruption, and written again by
    the resumed run)."""

    def __init__(self, path: str | Path, head: str, tail: str, sep: str, continue_existing: bool = False,
                 marker: str = "", keep: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tail, self.sep = tail.encode("utf-8"), sep.encode("utf-8")
        self.end = len(head.encode("utf-8"))  # where the tail starts
        self.count = 0
        if continue_existing and self.path.is_file():
            data = self.path.read_bytes()
            hb = head.encode("utf-8")
            if GENERATOR_META in head and not data.startswith(hb):  # a page begun before the marker existed
                hb = head.replace(GENERATOR_META, "").encode("utf-8")
            if data.startswith(hb) and data.endswith(self.tail) and hb.endswith(b"\n"):
                self.end = len(data) - len(self.tail)
                needle = b"\n" + marker.encode("utf-8")
                starts, at = [], data.find(needle, len(hb) - 1, self.end)
                while at >= 0:
                    starts.append(at + 1)
                    at = data.find(needle, at + 1, self.end)
                self.count = len(starts)
                if keep is not None and self.count > keep:
                    self.end = starts[keep] - len(self.sep) if keep else len(hb)
                    with open_plain_file(self.path, "r+b") as f:  # never through a link planted meanwhile
                        f.seek(self.end)
                        f.write(self.tail)
                        f.truncate()
                    self.count = keep
                return
            log.warning("%s is not a complete file of this writer: it is started anew", self.path)
        atomic_write(self.path, head.encode("utf-8") + self.tail, fsync=False)

    def append(self, parts: Sequence[str]) -> None:
        import os

        if not parts:
            return
        body = (self.sep if self.count else b"") + self.sep.join(x.encode("utf-8") for x in parts)
        with open_plain_file(self.path, "r+b") as f:  # reopened by name each batch: never through a planted link
            f.seek(self.end)
            f.write(body + self.tail)
            f.truncate()
            f.flush()
            os.fsync(f.fileno())
        self.end += len(body)
        self.count += len(parts)


class JSONWriter:
    """Write linked documents as one JSON array, appended batch by batch: the file is a complete array after every
    batch (each batch costs its own size, whatever was written before)."""

    def __init__(self, path: str | Path, indent: int | None = 2, continue_existing: bool = False,
                 keep: int | None = None) -> None:
        self.path = Path(path)
        self.indent = indent
        # every item starts a line with "{" (nested objects are indented; a compact item is one line)
        self._file = _ArrayFile(self.path, "[\n", "\n]\n", ",\n", continue_existing, "{", keep)

    @property
    def count(self) -> int:
        """Documents the file holds (a continued file's included)."""
        return self._file.count

    def write(self, batch: Sequence[Any]) -> int:
        self._file.append([json.dumps(to_jsonable(d), ensure_ascii=False, indent=self.indent) for d in batch])
        return len(batch)

    def close(self) -> None:
        """Nothing is buffered: the file is complete after every batch."""

    def __enter__(self) -> JSONWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HTMLWriter:
    """Write a self-contained HTML page of linked documents, appended batch by batch (complete after each)."""

    def __init__(self, path: str | Path, title: str = "glinker: linked documents", continue_existing: bool = False,
                 keep: int | None = None, lang: str | None = None) -> None:
        """``lang``: the page's language (``<html lang=...>``, a BCP 47 tag such as ``ar``), when all its documents
        are in one; by default none is declared (each document's text block takes its direction from its text,
        and its language from the document's ``meta.lang``/``meta.language`` when given)."""
        self.path = Path(path)
        self.title = title
        head, tail = _page(title, lang)
        self._file = _ArrayFile(self.path, head, tail, "\n", continue_existing, _SECTION, keep)

    @property
    def count(self) -> int:
        """Documents the page holds (a continued page's included)."""
        return self._file.count

    def write(self, batch: Sequence[Any]) -> int:
        n = self._file.count
        self._file.append([_render_doc(n + i, to_jsonable(d)) for i, d in enumerate(batch)])
        return len(batch)

    def close(self) -> None:
        """Nothing is buffered: the page is complete after every batch."""

    def __enter__(self) -> HTMLWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _get(d: Any, key: str) -> Any:
    return d.get(key) if isinstance(d, dict) else getattr(d, key, None)


_HEAD_BYTES = 1 << 20  # how much of an existing file is read to tell whether a writer made it
# how a record starts as pydantic writes a LinkedDocument (its id first; indented in a JSON array, compact in JSONL):
# what a first item or line cut by an interrupted write, or longer than _HEAD_BYTES, is told by
_RECORD_START = re.compile(rb'\s*\{\s*"(?:id|text)"\s*:')
_JSONL_START = b'{"id":'
_LEGACY_PAGE = b'<span id="gl-counts"></span>'  # in every page written before the generator marker was
_SHAPE = "a JSON object with text and links"


def _is_record(obj: Any, linked: bool = True) -> bool:
    """Whether ``obj`` has the shape of a linked document as the writers write it (text and links); ``linked``
    False: any record with a text (``glinker link`` writes a pipeline's mentions or candidates when it ends before
    linking)."""
    return isinstance(obj, dict) and isinstance(obj.get("text"), str) and (
        not linked or isinstance(obj.get("links"), list))


def foreign_output(path: str | Path, fmt: str, linked: bool = True) -> str | None:
    """Why the existing file at ``path`` is not one a ``fmt`` writer (jsonl, json, html) makes, or None when it is one,
    is empty, is missing or is not a regular file (``/dev/null``). A pipeline file names the paths its writers write:
    checked before a writer appends to or replaces a file, so that a pipeline cannot append JSON lines to a shell's rc
    file, or replace a document, that glinker did not write. Reads at most the file's first megabyte. ``linked``
    False: records of any kind with a text count as the writer's (``glinker link -o``, see :func:`_is_record`)."""
    shape = _SHAPE if linked else "a JSON object with a text"
    p = Path(path).expanduser()
    try:
        if not p.is_file() or p.stat().st_size == 0:
            return None
        with open(p, "rb") as f:
            head = f.read(_HEAD_BYTES)
    except OSError as e:
        return f"it cannot be read ({e.strerror or e})"
    if fmt == "jsonl":
        nl = head.find(b"\n")
        try:
            first = json.loads(head[:nl] if nl >= 0 else head)
        except ValueError:
            # one line, cut by an interrupted first write (the writer then removes it), or longer than what is read:
            # told by how the writer starts a record (compact, its id first)
            if nl < 0 and head.startswith(_JSONL_START):
                return None
            return "its first line is not JSON"
        return None if _is_record(first, linked) else f"its first line is not a linked document ({shape})"
    if fmt == "json":
        body = head.lstrip()
        if not body.startswith(b"["):
            return "it is not a JSON array"
        body = body[1:].lstrip()
        if body.startswith(b"]"):
            return None  # the empty array this writer starts with
        try:
            item, _ = json.JSONDecoder().raw_decode(body.decode("utf-8", errors="replace"))
        except ValueError:  # an item longer than what is read, or cut by an interrupted write: told by its start
            return None if _RECORD_START.match(body) else "its first item is not a linked document"
        return None if _is_record(item, linked) else f"its first item is not a linked document ({shape})"
    if fmt == "html":
        if head.startswith(b"<!DOCTYPE html>") and (GENERATOR_META.encode() in head or _LEGACY_PAGE in head):
            return None
        return f"it is not a glinker HTML report (its head has no {GENERATOR_META})"
    return None


_CSS = """
:root{--link:#dbeafe;--link-b:#2563eb;--nil:#f3f4f6;--nil-b:#9ca3af}
body{font:15px/1.7 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#111}
header{display:flex;gap:1.5rem;align-items:baseline;flex-wrap:wrap}
.gl-doc{border-top:1px solid #e5e7eb;padding:.8rem 0}
.gl-doc h2{font-size:.85rem;color:#6b7280;margin:.2rem 0;font-weight:600}
.gl-text{white-space:pre-wrap;word-wrap:break-word;unicode-bidi:plaintext;text-align:start}
mark.gl-m{position:relative;border-radius:3px;padding:0 1px;cursor:help}
mark.gl-link{background:var(--link);border-bottom:2px solid var(--link-b)}
mark.gl-nil{background:var(--nil);border-bottom:2px dashed var(--nil-b);color:#374151}
mark.gl-ment{background:#fef3c7;border-bottom:2px solid #d97706}
mark.gl-m::after{unicode-bidi:plaintext;text-align:start}
mark.gl-m:hover::after{content:attr(data-tip);position:absolute;inset-inline-start:0;top:1.6em;z-index:9;white-space:pre;
 background:#111827;color:#f9fafb;font-size:12px;line-height:1.4;padding:.3rem .5rem;border-radius:4px}
body.gl-hide-nil mark.gl-nil{background:none;border:none}
.gl-legend mark{cursor:default}
.gl-skipped{font-size:.8rem;color:#6b7280}
"""

_JS = """
(function(){
  var links=document.querySelectorAll('main mark.gl-link').length, nils=document.querySelectorAll('main mark.gl-nil').length;
  var ments=document.querySelectorAll('main mark.gl-ment').length;
  document.body.setAttribute('data-links', String(links));
  document.body.setAttribute('data-nils', String(nils));
  var c=document.getElementById('gl-counts');
  if(c){c.textContent=ments&&!links&&!nils?ments+' mentions':links+' linked, '+nils+' NIL';}
  var t=document.getElementById('gl-toggle-nil');
  if(t){t.addEventListener('change',function(){document.body.classList.toggle('gl-hide-nil',t.checked);});}
})();
"""


def _tip(link: dict[str, Any]) -> str:
    eid = link.get("entity_id") or NIL
    parts = [eid if eid != NIL else "NIL (not in the KB)"]
    if link.get("label"):
        parts.append(str(link["label"]))
    m = link.get("mention") or {}
    if m.get("label"):
        parts.append(f"type: {m['label']}")
    conf = link.get("confidence")
    if isinstance(conf, (int, float)):
        parts.append(f"confidence: {conf:.3f}")
    cands = link.get("candidates") or []
    if cands:
        top = ", ".join(str(c.get("entity_id", c)) if isinstance(c, dict) else str(c) for c in cands[:3])
        parts.append(f"candidates: {top}")
    return "\n".join(parts)


def _mention_tip(m: dict[str, Any]) -> str:
    parts = [f"type: {m['label']}" if m.get("label") else "mention"]
    if isinstance(m.get("score"), (int, float)):
        parts.append(f"score: {m['score']:.3f}")
    return "\n".join(parts)


_SECTION = '<section class="gl-doc"'  # starts every document's section (counted when a page is continued)
GENERATOR_META = '<meta name="generator" content="glinker">'
"""In the head of every page the HTML writer makes: a file without it is not replaced (see :func:`foreign_output`)."""


def _render_doc(i: int, doc: dict[str, Any]) -> str:
    text = doc.get("text") or ""
    links = []
    # a linking pipeline's record has links; one that stops at mention detection (ner_only) has mentions
    # (a pipeline that ends at a candidates stage: its mentions)
    mentions = doc.get("mentions") or [mc.get("mention") or {} for mc in doc.get("candidates") or []]
    items = doc.get("links") if doc.get("links") is not None else [{"mention": m, "_mention": True} for m in mentions]
    for ln in items:
        m = ln.get("mention") or {}
        s, e = m.get("start"), m.get("end")
        if isinstance(s, int) and isinstance(e, int) and 0 <= s < e <= len(text):
            links.append((s, e, ln))
        else:
            log.warning("document %r: mention with offsets (%r, %r) outside the text is not shown", doc.get("id"), s, e)

    def rank(t: tuple[int, int, dict[str, Any]]) -> tuple:
        s, e, ln = t
        conf = ln.get("confidence") if ln.get("confidence") is not None else (ln.get("mention") or {}).get("score")
        nil = not ln.get("_mention") and (ln.get("entity_id") or NIL) == NIL
        return (nil, -(conf if isinstance(conf, (int, float)) else 0.0), -(e - s), s)

    # overlapping mentions cannot nest in one highlight layer: links before NILs, then the most confident, the
    # longest, the earliest
    shown: list[tuple[int, int, dict[str, Any]]] = []
    for t in sorted(links, key=rank):
        if all(t[1] <= a or t[0] >= b for a, b, _ in shown):
            shown.append(t)
    skipped = len(links) - len(shown)
    shown.sort(key=lambda t: t[0])
    out, pos = [], 0
    for s, e, ln in shown:
        out.append(html.escape(text[pos:s]))
        if ln.get("_mention"):
            tip = _mention_tip(ln["mention"])
            a = " ".join(f'{k}="{html.escape(v, quote=True)}"' for k, v in {
                "class": "gl-m gl-ment", "data-label": str(ln["mention"].get("label") or ""), "data-tip": tip,
                "title": tip}.items())
            out.append(f"<mark {a}>{html.escape(text[s:e])}</mark>")
            pos = e
            continue
        eid = ln.get("entity_id") or NIL
        cls = "gl-nil" if eid == NIL else "gl-link"
        conf = ln.get("confidence")
        attrs = {
            "class": f"gl-m {cls}",
            "data-entity": eid,
            "data-label": str(ln.get("label") or ""),
            "data-confidence": f"{conf:.4f}" if isinstance(conf, (int, float)) else "",
            "data-tip": _tip(ln),
            "title": _tip(ln),
        }
        a = " ".join(f'{k}="{html.escape(v, quote=True)}"' for k, v in attrs.items())
        out.append(f"<mark {a}>{html.escape(text[s:e])}</mark>")
        pos = e
    out.append(html.escape(text[pos:]))
    doc_id = doc.get("id")
    head = f"document <bdi>{html.escape(str(doc_id))}</bdi>" if doc_id is not None else f"document #{i}"
    note = (f'<div class="gl-skipped">{skipped} overlapping mention(s) not highlighted</div>' if skipped else "")
    # the text's direction is its own (Arabic, Hebrew: right to left), line by line (unicode-bidi: plaintext)
    lang = _doc_lang(doc)
    attrs = ' dir="auto"' + (f' lang="{html.escape(lang, quote=True)}"' if lang else "")
    return (f'{_SECTION} data-doc="{html.escape(str(doc_id if doc_id is not None else i), quote=True)}">'
            f"<h2>{head}</h2><div class=\"gl-text\"{attrs}>{''.join(out)}</div>{note}</section>")


_LANG_TAG = re.compile(r"[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*")  # used with fullmatch


def _doc_lang(doc: dict[str, Any]) -> str | None:
    """A document's language tag from its ``meta.lang`` or ``meta.language`` (``ar``, ``he-IL``), when it is one."""
    meta = doc.get("meta") if isinstance(doc.get("meta"), dict) else {}
    for key in ("lang", "language"):
        v = meta.get(key)
        if isinstance(v, str) and _LANG_TAG.fullmatch(v.strip()):
            return v.strip()
    return None


def render_html(docs: Iterable[Any], title: str = "glinker: linked documents", lang: str | None = None) -> str:
    """A self-contained HTML page highlighting every document's links (NIL mentions styled apart), or the mentions
    of a pipeline without linking. ``lang``: as :class:`HTMLWriter`'s."""
    items = [to_jsonable(d) for d in docs]
    head, tail = _page(title, lang)
    return head + "\n".join(_render_doc(i, d) for i, d in enumerate(items)) + tail


def _page(title: str, lang: str | None = None) -> tuple[str, str]:
    """The page around the documents' sections: (head, tail). No language is declared unless ``lang`` is given:
    the documents are in any (a page declared English is hyphenated, voiced and shaped as English)."""
    t = html.escape(title)
    if lang is not None and not _LANG_TAG.fullmatch(lang):
        raise ValueError(f"lang {lang!r} is not a language tag (e.g. 'ar', 'he', 'de-CH')")
    return (
        "<!DOCTYPE html>\n<html" + (f' lang="{lang}"' if lang else "") + "><head><meta charset=\"utf-8\">"
        + GENERATOR_META +  # how a writer knows a page it may replace or continue (foreign_output)
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        # the page must not fetch anything: forbid every external load, allow only the inline style/script
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
        f"<title>{t}</title><style>{_CSS}</style></head>\n<body>"
        f"<header><h1>{t}</h1><span id=\"gl-counts\"></span>"
        "<span class=\"gl-legend\"><mark class=\"gl-m gl-link\">linked</mark> "
        "<mark class=\"gl-m gl-nil\">NIL</mark> <mark class=\"gl-m gl-ment\">mention</mark></span>"
        "<label><input type=\"checkbox\" id=\"gl-toggle-nil\"> hide NIL</label></header>\n"
        "<main>\n", f"\n</main>\n<script>{_JS}</script></body></html>\n"
    )


def documents_summary(docs: Iterable[Any]) -> dict[str, int]:
    """Counts of documents, linked and NIL mentions (for logs and tests)."""
    n = linked = nil = 0
    for d in docs:
        rec = to_jsonable(d)
        n += 1
        for ln in rec.get("links") or []:
            if (ln.get("entity_id") or NIL) == NIL:
                nil += 1
            else:
                linked += 1
    return {"documents": n, "linked": linked, "nil": nil}


def dumps_jsonl(docs: Iterable[Any]) -> str:
    """Documents as JSONL text (for piping to stdout)."""
    from glinker.io import json_line

    return "".join(json_line(to_jsonable(d)) + "\n" for d in docs)
