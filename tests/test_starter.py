"""`tunewise init` (config/starter.py): guesses the columns and says how, writes a starter config
that `run` reads as is, refuses with the columns it saw and the options to pass."""

from __future__ import annotations

import json

import yaml

from tests.conftest import write_csv
from tunewise.cli import main
from tunewise.config import load_config
from tunewise.config.starter import init
from tunewise.data.columns import guess_columns, name_role

MESSAGES = {
    "refund": ["where is my refund", "I want my money back please", "refund the broken kettle"],
    "card": ["my card was stolen", "I lost my debit card today", "please block my card now"],
}


def tickets(tmp_path, name="tickets.csv"):
    rows = [
        (str(1000 + 10 * i + j), f"{text} ({i})", label, "chat" if j % 2 else "email")
        for i, (label, texts) in enumerate(sorted(MESSAGES.items()) * 3)
        for j, text in enumerate(texts)
    ]
    return write_csv(tmp_path / name, rows, header=("ticket_id", "message", "intent", "channel"))


def test_init_guesses_the_columns_writes_a_runnable_config_and_prints_the_next_step(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    tickets(tmp_path)
    assert main(["init", "tickets.csv"]) == 0
    out = capsys.readouterr().out
    assert "text column: message — the longest free text" in out
    assert "label column: intent — 2 values over 18 rows" in out
    assert "other possible label columns: channel" in out
    assert "next: tunewise run tickets.yaml" in out
    text = (tmp_path / "tickets.yaml").read_text()
    assert text.splitlines()[0] == "# tunewise run tickets.yaml"
    assert "docs/config.md" in text
    written = yaml.safe_load(text)
    assert written == {  # only what is the user's: the recipe stays the schema's defaults
        "task": "classification",
        "name": "tickets",
        "data": {"train": "tickets.csv", "test": None, "text_col": "message",
                 "label_col": "intent"},
    }  # fmt: skip
    cfg = load_config(tmp_path / "tickets.yaml")
    assert cfg.data.text_col == "message" and cfg.train == load_config().train


def test_given_columns_and_a_test_file_are_used_and_checked(tmp_path, capsys):
    data, test = tickets(tmp_path), tickets(tmp_path, "test.csv")
    started = init(data, test, tmp_path / "c.yaml", label_col="channel")
    assert (started.text_col, started.label_col) == ("message", "channel")
    assert yaml.safe_load(started.config.read_text())["data"]["test"] == str(test)
    assert "given with --label-col" in capsys.readouterr().out
    bad = write_csv(tmp_path / "bad.csv", [("a", "b")], header=("text", "label"))
    assert main(["init", str(data), "--test", str(bad), "--out", str(tmp_path / "d.yaml")]) == 2
    assert "column 'message' not found" in capsys.readouterr().err
    assert main(["init", str(data), "--text-col", "msg", "--out", str(tmp_path / "e.yaml")]) == 2
    assert "--text-col: column 'msg' not found; the columns are: ticket_id" in (
        capsys.readouterr().err
    )


def test_init_refuses_to_guess_blind_and_names_the_columns_and_options(tmp_path, capsys):
    numbers = write_csv(tmp_path / "n.csv", [("1", "2"), ("3", "4")], header=("a", "b"))
    assert main(["init", str(numbers), "--out", str(tmp_path / "n.yaml")]) == 2
    err = capsys.readouterr().err
    assert "cannot tell which column is a free-text column" in err and "'a': 2 distinct" in err
    assert "pass --text-col with one of: a, b" in err and "pass --label-col" in err
    assert not (tmp_path / "n.yaml").exists()


def test_init_never_overwrites_without_force(tmp_path, capsys):
    data = tickets(tmp_path)
    (tmp_path / "c.yaml").write_text("mine")
    assert main(["init", str(data), "--out", str(tmp_path / "c.yaml")]) == 2
    assert "--force" in capsys.readouterr().err and (tmp_path / "c.yaml").read_text() == "mine"
    assert main(["init", str(data), "--out", str(tmp_path / "c.yaml"), "--force"]) == 0


def test_init_reads_json_lines_too(tmp_path):
    path = tmp_path / "chat.jsonl"
    lines = [{"utterance": t, "label": lab} for lab, ts in MESSAGES.items() for t in ts * 2]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    started = init(path, out=tmp_path / "chat.yaml")
    assert (started.text_col, started.label_col, started.rows) == ("utterance", "label", 12)


def test_the_guess_reads_values_and_names():
    assert name_role("customer_message") == "text_col" and name_role("intent") == "label_col"
    assert name_role("id") is None
    guess = guess_columns(
        {
            "id": ["1", "2", "3", "4"],
            "t": ["a b c", "d e f", "g h", "i j"],
            "y": ["x", "x", "z", "z"],
        }
    )
    assert (guess.text, guess.label) == ("t", "y")
