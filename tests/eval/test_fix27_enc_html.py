"""The HTML page of linked documents in right-to-left scripts: each document's text takes its direction from its
text (`dir="auto"`, line by line), the page declares no language it does not know (it said `lang="en"` for Arabic
and Hebrew documents, laid out left to right), a document's `meta.lang` is its text's `lang`."""

from __future__ import annotations

import html.parser
import json
import shutil
import subprocess

import pytest

from glinker.stages.writers import HTMLWriter, render_html
from glinker.types import Link, LinkedDocument, Mention

AR = "زرت القاهرة وقابلت محمد هناك."
HE = "שלום, אני גר בירושלים ועובד ב-IBM."
EN = "Douglas Adams lived in Cambridge."


def _doc(i: str, text: str, mention: str, eid: str, label: str, lang: str | None = None) -> LinkedDocument:
    s = text.index(mention)
    return LinkedDocument(id=i, text=text, meta={"lang": lang} if lang else {}, links=[
        Link(mention=Mention(start=s, end=s + len(mention), text=mention), entity_id=eid, label=label,
             confidence=0.9)])


DOCS = [_doc("ar1", AR, "القاهرة", "Q85", "القاهرة", lang="ar"), _doc("he1", HE, "IBM", "Q37156", "IBM"),
        _doc("en1", EN, "Cambridge", "Q350", "Cambridge")]


class _Texts(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.html: dict = {}
        self.texts: list[dict] = []
        self.body: dict = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "html":
            self.html = a
        elif tag == "body":
            self.body = a
        elif tag == "div" and "gl-text" in (a.get("class") or "").split():
            self.texts.append(a)


def test_the_markup_gives_each_text_its_own_direction_and_no_page_language() -> None:
    page = render_html(DOCS)
    p = _Texts()
    p.feed(page)
    assert "lang" not in p.html  # was lang="en" whatever the documents' language
    assert [t.get("dir") for t in p.texts] == ["auto", "auto", "auto"]
    assert [t.get("lang") for t in p.texts] == ["ar", None, None]  # from meta.lang
    assert "unicode-bidi:plaintext" in page  # line by line, and each tooltip line by its own text
    p = _Texts()
    p.feed(render_html(DOCS, lang="ar"))
    assert p.html.get("lang") == "ar"
    with pytest.raises(ValueError, match="not a language tag"):
        render_html(DOCS, lang='en" onload="x')
    bad = LinkedDocument(id="x", text="abc", meta={"lang": '"><script>'})
    assert "<script>\"" not in render_html([bad]) and 'lang="' not in render_html([bad]).split("<main>")[1]


_PROBE = """<script>
(function(){
  var out=[];
  document.querySelectorAll('main .gl-text').forEach(function(el){
    var box=el.getBoundingClientRect(), node=el.firstChild;
    while(node&&node.nodeType!==3){node=node.firstChild;}
    var r=document.createRange(); r.setStart(node,0); r.setEnd(node,1);
    var c=r.getBoundingClientRect(), m=el.querySelector('mark');
    out.push({dir:getComputedStyle(el).direction, first_left:c.left-box.left, first_right:box.right-c.right,
              tip:getComputedStyle(m,'::after').unicodeBidi});
  });
  document.body.setAttribute('data-probe', JSON.stringify(out));
})();
</script></body>"""


@pytest.mark.timeout(120)
def test_right_to_left_documents_are_laid_out_right_to_left_in_headless_chromium(tmp_path) -> None:
    exe = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    page = tmp_path / "rtl.html"
    with HTMLWriter(page, title="rtl") as w:
        w.write(DOCS)
    probe = tmp_path / "probe.html"  # the page as written, plus a script that measures where each text starts
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", _PROBE), encoding="utf-8")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
           f"--user-data-dir={tmp_path / 'profile'}", "--window-size=900,700", "--virtual-time-budget=2000",
           "--dump-dom", probe.as_uri()]
    try:
        r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("chromium did not finish dumping the DOM in 90 s")
    assert r.returncode == 0, r.stderr[-2000:]
    p = _Texts()
    p.feed(r.stdout)
    got = json.loads(p.body["data-probe"])
    assert [g["dir"] for g in got] == ["rtl", "rtl", "ltr"]
    # the first character of an Arabic or Hebrew text is at the right edge of its block, an English one's at the left
    for g in got[:2]:
        assert g["first_right"] < 2 and g["first_left"] > 100, g
    assert got[2]["first_left"] < 2 and got[2]["first_right"] > 100, got[2]
    assert {g["tip"] for g in got} == {"plaintext"}  # each tooltip line in its own direction
    assert p.body.get("data-links") == "3"  # the page's own script ran too



def test_write_links_declares_the_page_language_and_refuses_a_bad_tag(tmp_path):
    import pydantic
    import pytest

    from glinker.pipeline.stage import PipelineContext
    from glinker.stages.output import WriteLinks, WriteLinksParams
    from glinker.types import LinkedDocument

    out = tmp_path / "links.html"
    stage = WriteLinks("w", WriteLinksParams(path=str(out), lang="ar"), PipelineContext())
    stage.run([], [[LinkedDocument(id="a", text="مرحبا", links=[])]])
    stage.close()
    assert '<html lang="ar">' in out.read_text(encoding="utf-8")
    with pytest.raises(pydantic.ValidationError, match="language tag"):
        WriteLinksParams(path=str(out), lang='en"><script>')
