

def test_jsonl_lines_stay_lines_for_splitlines(tmp_path):
    """U+2028, U+2029 and U+0085 are legal raw in JSON strings but split lines for str.splitlines(): escaped."""
    import json

    from glinker.io import write_jsonl
    from glinker.stages.writers import dumps_jsonl

    doc = {"id": "1", "text": "a\u2028b\u2029c\x85d"}
    write_jsonl(tmp_path / "o.jsonl", [doc, doc])
    for text in ((tmp_path / "o.jsonl").read_text(encoding="utf-8"), dumps_jsonl([doc, doc])):
        lines = text.splitlines()
        assert len(lines) == 2 and [json.loads(x) for x in lines] == [doc, doc]
