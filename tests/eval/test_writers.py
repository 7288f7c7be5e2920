"""Writers: JSONL append/resume (including a crash mid-line), JSON, and the HTML page in a real browser."""

from __future__ import annotations

import html.parser
import shutil
import subprocess

import pytest

from glinker.errors import DataError
from glinker.io import (
    iter_linked_jsonl,
    read_done_ids,
    read_json,
    repair_jsonl_tail,
    resume_state,
    write_json,
    write_jsonl,
)
from glinker.stages.writers import HTMLWriter, JSONLWriter, JSONWriter, documents_summary, render_html
from glinker.types import Candidate, Link, LinkedDocument, Mention


def linked(i: int, text: str = "Douglas Adams wrote in Cambridge about Zaphod.") -> LinkedDocument:
    return LinkedDocument(id=str(i), text=text, links=[
        Link(mention=Mention(start=0, end=13, text="Douglas Adams", label="person"), entity_id="Q42",
             label="Douglas Adams", confidence=0.931, candidates=[Candidate(entity_id="Q42"), Candidate(entity_id="Q1")]),
        Link(mention=Mention(start=23, end=32, text="Cambridge"), entity_id="Q350", label="Cambridge", confidence=0.7),
        Link(mention=Mention(start=39, end=45, text="Zaphod"), confidence=0.2),  # NIL
    ])


def test_jsonl_append_and_resume(tmp_path):
    p = tmp_path / "out" / "links.jsonl"
    assert read_done_ids(p) == set() and resume_state(p).count == 0
    assert write_jsonl(p, [linked(0), linked(1)]) == 2
    assert write_jsonl(p, [linked(2).model_dump()]) == 1
    assert read_done_ids(p) == {"0", "1", "2"}
    docs = list(iter_linked_jsonl(p))
    assert [d.id for d in docs] == ["0", "1", "2"] and docs[0] == linked(0)
    assert write_jsonl(p, [linked(9)], append=False) == 1
    assert read_done_ids(p) == {"9"}


def test_interrupted_write_is_repaired(tmp_path):
    p = tmp_path / "links.jsonl"
    write_jsonl(p, [linked(0), linked(1)])
    with p.open("a") as f:
        f.write(linked(2).model_dump_json()[:40])  # a crash mid-line
    st = resume_state(p)
    assert st.partial_tail and st.done_ids == {"0", "1"} and st.count == 2
    w = JSONLWriter(p)
    assert w.already == 2
    todo = w.pending([linked(i) for i in range(4)])
    assert [d.id for d in todo] == ["2", "3"]
    w.write(todo)
    assert [d.id for d in iter_linked_jsonl(p)] == ["0", "1", "2", "3"]
    assert repair_jsonl_tail(p) == 0


def test_corrupt_middle_line_is_an_error(tmp_path):
    p = tmp_path / "links.jsonl"
    p.write_text(linked(0).model_dump_json() + "\n{oops\n" + linked(1).model_dump_json() + "\n")
    with pytest.raises(DataError) as e:
        read_done_ids(p)
    assert f"{p}:2" in str(e.value)


def test_json_writer_roundtrip(tmp_path):
    p = tmp_path / "links.json"
    with JSONWriter(p) as w:
        w.write([linked(0)])
        w.write([linked(1)])
    assert [d.id for d in read_json(p)] == ["0", "1"]
    assert write_json(p, []) == 0 and read_json(p) == []


class _Marks(html.parser.HTMLParser):
    """Collects <main> marks (class, attributes, text), <script> count and the body's attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.marks: list[dict] = []
        self.scripts = 0
        self.body: dict = {}
        self.title = ""
        self._in_main = False
        self._cur: dict | None = None
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "main":
            self._in_main = True
        elif tag == "mark" and self._in_main:
            self._cur = {**a, "text": ""}
        elif tag == "script":
            self.scripts += 1
        elif tag == "body":
            self.body = a
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag):
        if tag == "mark" and self._cur is not None:
            self.marks.append(self._cur)
            self._cur = None
        elif tag == "main":
            self._in_main = False
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._cur is not None:
            self._cur["text"] += data
        if self._in_title:
            self.title += data


EVIL = 'Bobby <script>document.title="pwned"</script> & "Eve" <img src=x onerror=alert(1)> visit Paris.'


def evil_doc() -> LinkedDocument:
    s = EVIL.index("<script>")
    e = EVIL.index("</script>") + len("</script>")
    p = EVIL.index("Paris")
    return LinkedDocument(id="<evil id>", text=EVIL, links=[
        Link(mention=Mention(start=s, end=e, text=EVIL[s:e]), entity_id="Q1<b>", label='x"y', confidence=0.5),
        Link(mention=Mention(start=p, end=p + 5, text="Paris"), entity_id="Q90", label="Paris", confidence=0.99)])


def test_render_html_is_escaped_and_self_contained():
    page = render_html([linked(0), evil_doc()])
    assert "<script>document.title" not in page and "<img src=x" not in page
    assert "&lt;script&gt;document.title=&quot;pwned&quot;&lt;/script&gt;" in page
    assert page.count("<script>") == 1  # only our own inline script
    for ext in ("http://", "https://", "src=\"", "<link"):
        assert ext not in page
    p = _Marks()
    p.feed(page)
    assert [(m["class"], m["text"], m["data-entity"]) for m in p.marks] == [
        ("gl-m gl-link", "Douglas Adams", "Q42"), ("gl-m gl-link", "Cambridge", "Q350"),
        ("gl-m gl-nil", "Zaphod", "NIL"),
        ("gl-m gl-link", '<script>document.title="pwned"</script>', "Q1<b>"), ("gl-m gl-link", "Paris", "Q90")]
    assert "confidence: 0.931" in p.marks[0]["title"] and "Douglas Adams" in p.marks[0]["title"]
    assert documents_summary([linked(0), evil_doc()]) == {"documents": 2, "linked": 4, "nil": 1}


def test_render_html_overlaps_and_bad_offsets():
    """Overlapping mentions: a link before a NIL, then the more confident, then the longer."""
    d = LinkedDocument(id="o", text="New York City hall", links=[
        Link(mention=Mention(start=0, end=18, text="New York City hall")),  # NIL, longest: hidden
        Link(mention=Mention(start=0, end=8, text="New York"), entity_id="Q60", confidence=0.9),
        Link(mention=Mention(start=4, end=13, text="York City"), entity_id="Q1", confidence=0.5),
        Link(mention=Mention(start=14, end=18, text="hall"), entity_id="Q3", confidence=0.2)])
    # a record (dict) with a link past its text, which a LinkedDocument refuses: the page leaves it out
    rec = {**d.model_dump(), "links": [*d.model_dump()["links"], {"mention": {"start": 20, "end": 25, "text": "zzz"},
                                                                  "entity_id": "Q2"}]}
    p = _Marks()
    p.feed(render_html([rec]))
    assert [m["text"] for m in p.marks] == ["New York", "hall"]
    assert "2 overlapping mention(s) not highlighted" in render_html([rec])


def test_html_of_a_pipeline_without_linking_highlights_its_mentions():
    rec = {"id": "m", "text": "Ada met Bob.", "mentions": [{"start": 0, "end": 3, "text": "Ada", "label": "person",
                                                           "score": 0.91}]}
    p = _Marks()
    p.feed(render_html([rec]))
    assert [(m["class"], m["text"]) for m in p.marks] == [("gl-m gl-ment", "Ada")]
    assert "type: person" in render_html([rec]) and "score: 0.910" in render_html([rec])


def test_json_and_html_writers_append_and_stay_complete(tmp_path):
    """Each batch is written over the closing tail: the file is whole after every batch, and a batch costs its own
    size (the file is never rewritten)."""
    js, page = tmp_path / "l.json", tmp_path / "l.html"
    jw, hw = JSONWriter(js), HTMLWriter(page, title="t")
    assert read_json(js) == [] and page.read_text().rstrip().endswith("</html>")
    for i in range(3):
        jw.write([linked(2 * i), linked(2 * i + 1)])
        hw.write([linked(2 * i), linked(2 * i + 1)])
        assert [d.id for d in read_json(js)] == [str(k) for k in range(2 * i + 2)]
        text = page.read_text()
        assert text.count('class="gl-doc"') == 2 * i + 2 and text.rstrip().endswith("</html>")
    assert render_html([linked(k) for k in range(6)], title="t") == page.read_text()


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.mark.timeout(120)
def test_html_in_headless_chromium(tmp_path):
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    page = tmp_path / "links.html"
    with HTMLWriter(page, title="glinker test page") as w:
        w.write([linked(0), evil_doc()])
    profile = tmp_path / "profile"
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
           f"--user-data-dir={profile}", "--virtual-time-budget=2000", "--dump-dom", page.as_uri()]
    try:
        r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("chromium did not finish dumping the DOM in 90 s")
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    p = _Marks()
    p.feed(dom)
    # the injected <script> never ran (title unchanged) and is shown as text inside its highlight
    assert p.title == "glinker test page"
    assert p.scripts == 1
    texts = [(m["class"], m["text"]) for m in p.marks]
    assert ("gl-m gl-link", '<script>document.title="pwned"</script>') in texts
    assert ("gl-m gl-nil", "Zaphod") in texts and ("gl-m gl-link", "Douglas Adams") in texts
    # our inline JS ran and counted the highlights in the rendered DOM
    assert p.body.get("data-links") == "4" and p.body.get("data-nils") == "1"
    assert "4 linked, 1 NIL" in dom
    assert "<img" not in dom  # the injected tag is text, not an element
