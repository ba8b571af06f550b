"""Input a careless export produces: duplicate header names, NUL bytes and lone surrogates are
each a line-numbered error (exit 2) before any model loads, never a traceback or a guess."""

from __future__ import annotations

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


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("my \ud800 card", "lone surrogate (\\ud800"),
        ("my \x00card", "NUL byte (\\x00) at character 4"),
    ],
)
def test_broken_characters_are_errors_with_their_line(tmp_path, capsys, text, said):
    path = tmp_path / "t.jsonl"  # JSON escapes carry both into a text; a CSV can carry NUL
    rows = [{"text": "fine text", "label": "a"}, {"text": text, "label": "b"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ex, problems = read_examples(path, "text", "label")
    assert ex.texts == ["fine text"] and [(p.line, p.field) for p in problems] == [(2, "text")]
    assert said in problems[0].message
    assert main(["audit", str(path)]) == 2
    assert said in capsys.readouterr().err
    out = tmp_path / "clean.csv"
    assert main(["prepare", str(path), "--out", str(out)]) == 2
    assert not out.exists()  # nothing half-written


def test_a_nul_byte_in_a_csv_is_caught_too(tmp_path):
    path = tmp_path / "n.csv"
    path.write_bytes(b"text,label\nok row,a\nbad\x00row,b\n")
    _, problems = read_examples(path, "text", "label")
    assert [(p.line, "NUL byte" in p.message) for p in problems] == [(3, True)]
