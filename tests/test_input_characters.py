"""Input a careless export produces: a duplicated header name is a line-numbered error (exit 2)
before any model loads; NUL bytes and lone surrogates in a text become U+FFFD as the file is
read, the audit names each such row by its line, and `prepare` cleans them: never a traceback,
never a half-written file."""

from __future__ import annotations

import csv
import json

import pytest

from tunewise.cli import main
from tunewise.data.load import read_examples


def test_a_duplicated_header_name_is_an_error_not_the_last_column(tmp_path, capsys):
    path = tmp_path / "d.csv"
    path.write_text("text,category,text\nmy card,card,hello there\n", encoding="utf-8")
    ex, problems = read_examples(path, "text", "category")
    assert len(ex) == 0 and [(p.line, p.field) for p in problems] == [(1, "text")]
    assert "appears 2 times in the header (columns 1, 3)" in problems[0].message
    assert main(["audit", str(path), "--label-col", "category"]) == 2
    assert "appears 2 times" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["my \ud800 card", "my \x00card"])
def test_broken_characters_are_named_by_line_and_cleaned_by_prepare(tmp_path, text, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the audit writes audit/ here
    path = tmp_path / "t.jsonl"  # JSON escapes carry both into a text; a CSV can carry NUL
    rows = [{"text": "fine text", "label": "a"}, {"text": text, "label": "b"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ex, problems = read_examples(path, "text", "label")
    assert problems == [] and ex.texts == ["fine text", text[:3] + "\ufffd" + text[4:]]
    assert main(["audit", str(path)]) == 0
    (found,) = [f for f in json.loads((tmp_path / "audit" / "audit.json").read_text())
                if f["code"] == "empty-or-garbage"]  # fmt: skip
    assert f"{path}:2" in found["message"] and "NUL byte, a lone surrogate" in str(found)
    out = tmp_path / "clean.csv"
    assert main(["prepare", str(path), "--out", str(out)]) == 0
    with out.open(encoding="utf-8") as fh:
        assert [r["text"] for r in csv.DictReader(fh)] == ["fine text", "my card"]


def test_a_broken_label_is_an_error_with_its_line(tmp_path, capsys):
    path = tmp_path / "l.jsonl"
    path.write_text(json.dumps({"text": "my card", "label": "ca\ud800rd"}) + "\n")
    _, problems = read_examples(path, "text", "label")
    assert [(p.line, p.field) for p in problems] == [(1, "label")]
    out = tmp_path / "clean.csv"
    assert main(["prepare", str(path), "--out", str(out)]) == 2
    assert "lone surrogate" in capsys.readouterr().err and not out.exists()


def test_a_nul_byte_in_a_csv_is_replaced_too(tmp_path):
    path = tmp_path / "n.csv"
    path.write_bytes(b"text,label\nok row,a\nbad\x00row,b\n")
    ex, problems = read_examples(path, "text", "label")
    assert problems == [] and ex.texts == ["ok row", "bad\ufffdrow"] and ex.lines == [2, 3]
