"""BIO files as annotation tools export them (session 36, a fine-tuning walkthrough): lines that end in \\r alone
(read as one line before: one sentence, no span, and errors that named no cause), the token ``#`` at the start of
a sentence (``# O``: dropped as a comment before), lower-case tag prefixes (``b-per``, which the format check took
for BIO and the reader then refused)."""

from __future__ import annotations

from glinker.eval.datasets import iter_bio, sniff_training_format


def _spans(path):
    return [(e.tokens, e.spans) for e in iter_bio(path)]


def test_lines_ending_in_a_carriage_return_alone(tmp_path):
    f = tmp_path / "cr.bio"
    f.write_bytes(b"John\tB-PER\rSmith\tI-PER\r\rMary\tB-PER\r")
    assert sniff_training_format(f) == "bio"
    assert _spans(f) == [(["John", "Smith"], [(0, 1, "person")]), (["Mary"], [(0, 0, "person")])]
    big = tmp_path / "big.bio"  # past the first chunk read, and past the 4 KB the format check reads
    big.write_bytes(b"".join(b"Tok%d\tB-LOC\r" % i + (b"\r" if i % 10 == 9 else b"") for i in range(3000)))
    assert sniff_training_format(big) == "bio"
    ex = list(iter_bio(big))
    assert len(ex) == 300 and ex[-1].tokens[-1] == "Tok2999" and len(ex[-1].spans) == 10
    crlf = tmp_path / "crlf.bio"  # \r\n is unchanged
    crlf.write_bytes(b"John\tB-PER\r\nSmith\tI-PER\r\n\r\nMary\tB-PER\r\n")
    assert _spans(crlf) == _spans(f)


def test_the_token_hash_is_not_a_comment(tmp_path):
    f = tmp_path / "hash.bio"
    f.write_text("# sent_id = 1\n# newdoc\n# O\nJohn B-PER\n\n# text = Mary O\n# S-1\n# source: company e-mail\n"
                 "Mary B-PER\n", encoding="utf-8")
    # comments ending in what reads as a tag (S-1, e-mail) stay comments: only "# O" is the token "#"
    assert _spans(f) == [(["#", "John"], [(1, 1, "person")]), (["Mary"], [(0, 0, "person")])]
    conll = tmp_path / "conll.txt"  # CoNLL-2003's columns
    conll.write_text("# NN I-NP O\nBlair NNP I-NP B-PER\n", encoding="utf-8")
    assert _spans(conll) == [(["#", "Blair"], [(1, 1, "person")])]


def test_lower_case_tag_prefixes(tmp_path):
    f = tmp_path / "low.bio"
    f.write_text("Ann\tb-per\nLee\ti-per\nruns\to\nin\tO\nOslo\ts-loc\n", encoding="utf-8")
    assert sniff_training_format(f) == "bio"
    assert _spans(f) == [(["Ann", "Lee", "runs", "in", "Oslo"], [(0, 1, "person"), (4, 4, "location")])]


def test_a_utf16_file_is_said_to_be_utf16(tmp_path):
    import pytest

    from glinker.errors import DataError

    f = tmp_path / "notepad.bio"
    f.write_bytes("John\tB-PER\r\n".encode("utf-16"))  # Notepad's "Unicode": a byte-order mark, then UTF-16LE
    with pytest.raises(DataError, match="UTF-16 text, not UTF-8") as e:
        list(iter_bio(f))
    assert "iconv -f UTF-16 -t UTF-8" in e.value.fix and "latin1" not in e.value.fix


def test_an_unquoted_variable_in_a_flow_mapping_is_told_to_be_quoted(tmp_path):
    import pytest

    from glinker.errors import GlinkerError
    from glinker.pipeline.yamlsrc import load_yaml

    with pytest.raises(GlinkerError) as e:
        load_yaml("data:\n  train:\n    - {path: ${MYDATA}/train.bio}\n", source="c.yaml", what="training config")
    assert "c.yaml:3" in str(e.value) and 'quote a value holding ${VAR}' in str(e.value)
    for text in ("a:\n  b: 1\n   c: 2\n", "a:\n  b: 1\n   c: ${Y}\n", "kb: ${KB}: x\n"):  # other errors: the
        with pytest.raises(GlinkerError) as e:  # general fix, a ${VAR} on the line or not
            load_yaml(text, source="c.yaml")
        assert "quote a value" not in str(e.value) and "fix the YAML syntax" in str(e.value), text
