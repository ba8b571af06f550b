"""Bad options and bad feedback stores end `serve` and `refine` with exit 2 and a message naming
the option and a fix, before any model loads (never a traceback, never a server that accepts
`--max-batch 0` and then cannot answer)."""

from __future__ import annotations

import pytest

from tests.conftest import write_csv
from tests.tiny_run import trained_run
from tunewise.cli import main
from tunewise.core.errors import InputError
from tunewise.feedback.store import FeedbackStore, open_store


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("startup")
    rows = [(f"{w} {i}", w) for i in range(8) for w in ("card", "loan", "rate")]
    train, test = write_csv(tmp / "train.csv", rows), write_csv(tmp / "test.csv", rows[:9])
    return trained_run(tmp, tiny_model_dir, train, test)


@pytest.mark.parametrize(
    "option, value, says",
    [
        ("--max-batch", "0", "must be 1 or more, got 0"),
        ("--threads", "0", "must be 1 or more, got 0"),
        ("--max-wait-ms", "-5", "must be 0 or more, got -5"),
        ("--max-text-chars", "0", "must be 1 or more, got 0"),
        ("--oos-threshold", "nan", "must be a number, got nan"),
        ("--max-batch", "many", "invalid int value: 'many'"),
    ],
)
def test_serve_refuses_option_values_it_cannot_serve_with(run_dir, capsys, option, value, says):
    assert main(["serve", str(run_dir), option, value]) == 2
    err = capsys.readouterr().err
    assert f"argument {option}: {says}" in err
    assert "did you mean" not in err  # the option is spelled right; only its value is wrong


def test_serve_accepts_the_edges_of_each_range():
    from tunewise.cli import build_parser

    p = build_parser()
    args = p.parse_args(["serve", "r", "--max-batch", "1", "--threads", "1", "--max-wait-ms", "0"])
    assert (args.max_batch, args.threads, args.max_wait_ms) == (1, 1, 0.0)
    assert p.parse_args(["serve", "r", "--oos-threshold", "inf"]).oos_threshold == float("inf")


BAD_STORES = [
    ("nonsense://x", "nonsense://x"),
    ("sqlite:////no/such/folder/feedback.db", "unable to open database file"),
    ("postgresql://tester:s3cret@127.0.0.1:1/feedback", "postgresql://tester:***@127.0.0.1:1"),
]


@pytest.mark.parametrize("url, says", BAD_STORES)
def test_a_store_that_cannot_be_opened_is_an_input_error_naming_it_without_its_password(url, says):
    with pytest.raises(InputError) as caught:
        FeedbackStore(url)
    message = str(caught.value)
    assert "--feedback-db: cannot open" in message and "fix:" in message
    assert says in message
    assert "s3cret" not in message


@pytest.mark.parametrize("command", ["serve", "refine"])
def test_serve_and_refine_exit_2_on_a_bad_feedback_db(run_dir, capsys, command):
    for url, _ in BAD_STORES[:2]:
        assert main([command, str(run_dir), "--feedback-db", url]) == 2
        err = capsys.readouterr().err
        assert "--feedback-db: cannot open" in err and "Traceback" not in err


def test_a_file_path_is_a_sqlite_store_for_serve_as_for_refine(tmp_path):
    store = open_store(str(tmp_path / "fb.db"), tmp_path)
    try:
        store.add("k1", {"text": "lost card", "verdict": "correct"})
    finally:
        store.close()
    assert (tmp_path / "fb.db").is_file()
