"""Loading, checking and splitting labelled data: every problem named with its file and line."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from tunewise.core.errors import InputError
from tunewise.data.load import COLUMN_FLAGS, Examples, read_examples
from tunewise.data.split import stratified_sample, stratified_split
from tunewise.data.validate import check_splits, label_order, load_splits

BANKING = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77"
ROWS = [(f"text number {i}", ["a", "b", "c"][i % 3]) for i in range(12)]


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return path


def csv_file(path: Path, rows=ROWS, header: str = "text,label") -> Path:
    return write(path, "\n".join([header, *(f"{t},{label}" for t, label in rows)]) + "\n")


def jsonl_file(path: Path, rows=ROWS) -> Path:
    return write(path, "".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows))


def cfg(train, validation=None, test=None, max_rows=None, val_fraction=0.25, label_col="label"):
    return SimpleNamespace(
        train=str(train),
        validation=validation and str(validation),
        test=test and str(test),
        text_col="text",
        label_col=label_col,
        max_rows=max_rows,
        val_fraction=val_fraction,
    )


def problems_text(path, **kw) -> str:
    ex, problems = read_examples(path, "text", "label", **kw)
    return str(InputError(problems))


# --- one test per problem, each at its exact line -------------------------------------------


def test_missing_file_raises_with_field(tmp_path):
    with pytest.raises(InputError) as err:
        read_examples(tmp_path / "nope.csv", "text", "label", field="data.train")
    assert "data.train: file not found" in str(err.value)
    assert "nope.csv" in str(err.value)


def test_missing_column_lists_columns_and_suggests_closest(tmp_path):
    path = csv_file(tmp_path / "train.csv", header="txt,label")
    ex, problems = read_examples(path, "text", "label")
    assert len(ex) == 0 and len(problems) == 1
    assert "train.csv:1: text: column 'text' not found; the columns are: txt, label" in str(
        problems[0]
    )
    assert "did you mean 'txt'?" in problems[0].fix and "data.text_col" in problems[0].fix


def test_a_missing_text_column_never_suggests_the_label_column(tmp_path):
    """`utterance,intent`: 'intent' is close to 'text' by spelling but is the label column."""
    path = csv_file(tmp_path / "train.csv", header="utterance,intent")
    _, problems = read_examples(path, "text", "intent")
    assert [p.fix for p in problems] == ["did you mean 'utterance'? set data.text_col: utterance"]
    _, problems = read_examples(path, "text", "label")  # both missing: each gets its own
    assert [p.fix for p in problems] == [
        "did you mean 'utterance'? set data.text_col: utterance",
        "did you mean 'intent'? set data.label_col: intent",
    ]
    path = csv_file(tmp_path / "ids.csv", header="id,intent")  # no text-like column at all
    _, problems = read_examples(path, "text", "intent")
    assert problems[0].fix == "set data.text_col to one of the columns above"


def test_a_command_line_file_names_the_option_to_pass(tmp_path):
    path = csv_file(tmp_path / "train.csv", header="customer_message,category")
    _, problems = read_examples(path, "text", "label", field="DATA", flags=COLUMN_FLAGS)
    assert [p.fix for p in problems] == [
        "did you mean 'customer_message'? pass --text-col customer_message",
        "did you mean 'category'? pass --label-col category",
    ]


def test_empty_text_at_its_line(tmp_path):
    path = write(tmp_path / "train.csv", "text,label\nhello,a\nhi,b\n   ,a\nyo,b\n")
    ex, problems = read_examples(path, "text", "label")
    assert "train.csv:4: text: text is empty" in str(InputError(problems))
    assert ex.texts == ["hello", "hi", "yo"] and ex.lines == [2, 3, 5]


def test_missing_label_at_its_line(tmp_path):
    path = write(tmp_path / "train.csv", "text,label\nhello,a\nhi,\nyo\n")
    text = problems_text(path)
    assert "train.csv:3: label: label is missing" in text
    assert "train.csv:4: label: label is missing" in text


def test_malformed_json_line(tmp_path):
    path = write(
        tmp_path / "train.jsonl",
        '{"text": "hi", "label": "a"}\n\n{"text": "yo", "label": \n[1, 2]\n',
    )
    ex, problems = read_examples(path, "text", "label")
    text = str(InputError(problems))
    assert "train.jsonl:3: json: malformed JSON (Expecting value at column" in text
    assert "train.jsonl:4: json: expected a JSON object, got an array" in text
    assert ex.lines == [1]


def test_non_utf8_bytes_reported_per_line(tmp_path):
    data = b"text,label\nfine,a\ncaf\xe9 au lait,b\nok,a\nna\xefve,b\n"
    ex, problems = read_examples(write(tmp_path / "train.csv", data), "text", "label")
    text = str(InputError(problems))
    assert "train.csv:3: bytes: not valid UTF-8 (byte 0xe9 at column 4)" in text
    assert "train.csv:5: bytes: not valid UTF-8 (byte 0xef at column 3)" in text
    assert "re-save the file as UTF-8" in text
    assert ex.texts == ["fine", "ok"] and ex.lines == [2, 4]


@pytest.mark.parametrize("name", ["u16.csv", "u16.jsonl"])
def test_utf16_file_is_one_problem(tmp_path, name):
    data = "text,label\nx,y\n" if name.endswith("csv") else '{"text": "x", "label": "y"}\n'
    _, problems = read_examples(write(tmp_path / name, data.encode("utf-16")), "text", "label")
    assert [(p.line, p.field, p.message) for p in problems] == [
        (1, "bytes", "file is UTF-16, not UTF-8")
    ]


def test_test_label_unseen_in_train_names_lines(tmp_path):
    train, _ = read_examples(csv_file(tmp_path / "train.csv"), "text", "label")
    test_path = write(tmp_path / "test.csv", "text,label\nx,a\ny,zz\nw,b\nv,zz\nu,cc\n")
    test, problems = read_examples(test_path, "text", "label")
    assert problems == []
    text = str(InputError(check_splits(train, None, test)))
    assert (
        "test.csv:3: label: label 'zz' never occurs in the training data (also on line 5)" in text
    )
    assert "test.csv:6: label: label 'cc'" in text and "did you mean 'c'?" in text


def test_fewer_than_two_classes(tmp_path):
    path = csv_file(tmp_path / "train.csv", rows=[(f"t{i}", "only") for i in range(12)])
    with pytest.raises(InputError) as err:
        load_splits(cfg(path, validation=path), seed=0)
    assert "train.csv: label: training data has 1 class(es) ('only')" in str(err.value)


def test_fewer_than_ten_rows(tmp_path):
    path = csv_file(tmp_path / "train.csv", rows=ROWS[:6])
    with pytest.raises(InputError) as err:
        load_splits(cfg(path, validation=path), seed=0)
    assert "train.csv: rows: only 6 usable training rows; at least 10 are needed" in str(err.value)


def test_all_problems_of_all_files_reported_together(tmp_path):
    train = write(
        tmp_path / "train.csv",
        "text,label\n"
        + "".join(f"t{i},{'ab'[i % 2]}\n" for i in range(12))
        + ",a\nx,\n"
        + "ok,b\n",
    )
    test = write(tmp_path / "test.jsonl", '{"text": "q", "label": "a"}\n{oops\n')
    with pytest.raises(InputError) as err:
        load_splits(cfg(train, test=test, validation=tmp_path / "missing.csv"), seed=0)
    lines = str(err.value).splitlines()
    assert any("train.csv:14: text: text is empty" in x for x in lines)
    assert any("train.csv:15: label: label is missing" in x for x in lines)
    assert any("data.validation: file not found" in x for x in lines)
    assert any("test.jsonl:2: json: malformed JSON" in x for x in lines)
    assert len(err.value.problems) == 4


def test_multiline_quoted_field_keeps_later_line_numbers(tmp_path):
    path = write(
        tmp_path / "train.csv",
        '\ufefftext,label\n"first\nsecond\nthird",a\n"say ""hi""",b\n,a\n  last ,b\n',
    )
    ex, problems = read_examples(path, "text", "label")
    assert ex.texts == ["first\nsecond\nthird", 'say "hi"', "last"]
    assert ex.lines == [2, 5, 7]
    assert [(p.line, p.field, p.message) for p in problems] == [(6, "text", "text is empty")]


def test_unterminated_quote_and_extra_fields_are_reported(tmp_path):
    path = write(tmp_path / "train.csv", 'text,label\nhi, there,a\nok,b\n"open,a\nz,b\n')
    text = problems_text(path)
    assert "train.csv:2: csv: row has 3 fields but the header has 2" in text
    assert "train.csv:4: csv: malformed CSV (unexpected end of data)" in text


# --- formats ----------------------------------------------------------------------------------


def test_jsonl_parquet_and_datasets_folder_load_the_same(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {"text": [t for t, _ in ROWS], "label": [lab for _, lab in ROWS], "x": [1] * 12}
    pq.write_table(pa.table(columns), tmp_path / "train.parquet")
    datasets.Dataset.from_dict(columns).save_to_disk(str(tmp_path / "ds"))
    paths = [
        csv_file(tmp_path / "train.csv"),
        jsonl_file(tmp_path / "train.jsonl"),
        tmp_path / "train.parquet",
        tmp_path / "ds",
    ]
    loaded = []
    for path in paths:
        ex, problems = read_examples(path, "text", "label")
        assert problems == [], path
        assert ex.source == str(path)
        loaded.append((ex.texts, ex.labels))
    assert all(item == loaded[0] for item in loaded)
    assert loaded[0][0][0] == "text number 0" and len(loaded[0][0]) == 12


def test_parquet_integer_labels_become_strings_and_bad_rows_use_row_numbers(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"text": ["a", None, "c"], "label": [0, 1, None]}), tmp_path / "d.parquet"
    )
    ex, problems = read_examples(tmp_path / "d.parquet", "text", "label")
    assert ex.labels == ["0"] and ex.lines == [1]
    text = str(InputError(problems))
    assert "d.parquet:2: text: text is missing" in text and "d.parquet:3: label:" in text


def test_corrupt_parquet_and_dataset_dict_are_problems(tmp_path):
    import datasets

    ex, problems = read_examples(write(tmp_path / "bad.parquet", b"not parquet"), "text", "label")
    assert len(ex) == 0 and "bad.parquet: parquet: cannot read the Parquet file" in str(problems[0])
    split = datasets.Dataset.from_dict({"text": ["a"], "label": ["b"]})
    datasets.DatasetDict(train=split, test=split).save_to_disk(str(tmp_path / "dd"))
    _, problems = read_examples(tmp_path / "dd", "text", "label")
    assert "splits test, train" in problems[0].message and "/dd/test" in problems[0].fix


def test_max_rows_keeps_first_valid_rows(tmp_path):
    rows = [("", "a"), *ROWS]
    ex, problems = read_examples(
        csv_file(tmp_path / "t.csv", rows=rows), "text", "label", max_rows=3
    )
    assert ex.texts == ["text number 0", "text number 1", "text number 2"]
    assert ex.lines == [3, 4, 5] and len(problems) == 1
    ex, _ = read_examples(jsonl_file(tmp_path / "t.jsonl"), "text", "label", max_rows=5)
    assert len(ex) == 5


def test_labels_optional_for_prediction_input(tmp_path):
    path = write(tmp_path / "p.csv", "text\nhello\nworld\n")
    ex, problems = read_examples(path, "text", "label", require_labels=False)
    assert problems == [] and ex.texts == ["hello", "world"] and ex.labels == ["", ""]


# --- splitting --------------------------------------------------------------------------------


def make_examples(counts: dict[str, int]) -> Examples:
    labels = [label for label, n in counts.items() for _ in range(n)]
    return Examples(
        [f"t{i}" for i in range(len(labels))], labels, list(range(2, len(labels) + 2)), "mem"
    )


def test_stratified_split_is_deterministic_disjoint_complete_and_proportional():
    ex = make_examples({"a": 60, "b": 30, "c": 10, "single": 1})
    train, val = stratified_split(ex, 0.2, seed=7)
    again_train, again_val = stratified_split(ex, 0.2, seed=7)
    assert (train.texts, val.texts) == (again_train.texts, again_val.texts)
    assert stratified_split(ex, 0.2, seed=8)[1].texts != val.texts
    assert set(train.texts).isdisjoint(val.texts)
    assert sorted(train.texts + val.texts) == sorted(ex.texts)
    assert Counter(val.labels) == {"a": 12, "b": 6, "c": 2}
    assert "single" in train.labels
    assert val.lines == sorted(val.lines)


def test_every_class_with_two_rows_reaches_validation():
    ex = make_examples({"a": 2, "b": 3, "c": 50})
    train, val = stratified_split(ex, 0.1, seed=0)
    assert Counter(val.labels) == {"a": 1, "b": 1, "c": 5}
    assert set(train.labels) == {"a", "b", "c"}


def test_stratified_sample_exact_size_and_covers_classes():
    ex = make_examples({"a": 500, "b": 300, "c": 3})
    sample = stratified_sample(ex, 80, seed=1)
    assert len(sample) == 80 and set(sample.labels) == {"a", "b", "c"}
    assert sample.texts == stratified_sample(ex, 80, seed=1).texts
    assert stratified_sample(ex, 10_000, seed=1) is ex


def test_load_splits_splits_validation_and_maps_ids(tmp_path):
    rows = [(f"t{i}", "abc"[i % 3]) for i in range(30)]
    splits = load_splits(cfg(csv_file(tmp_path / "train.csv", rows=rows), val_fraction=0.2), seed=3)
    assert splits.validation_source == "split" and splits.labels == ["a", "b", "c"]
    assert (len(splits.train), len(splits.validation)) == (24, 6)
    assert splits.ids(splits.validation) == [
        splits.labels.index(x) for x in splits.validation.labels
    ]
    assert label_order(["10", "2", "1"]) == ["1", "2", "10"]


def test_load_splits_on_banking77_with_max_rows():
    if not (BANKING / "train.csv").exists():
        pytest.skip("banking77 mirror not present")
    splits = load_splits(
        cfg(
            BANKING / "train.csv",
            test=BANKING / "test.csv",
            max_rows=300,
            val_fraction=0.1,
            label_col="category",
        ),
        seed=0,
    )
    assert len(splits.labels) == 77
    assert len(splits.train) + len(splits.validation) == 300
    assert splits.test is not None and len(splits.test) == 300
    assert set(splits.validation.labels) == set(splits.labels)
    assert splits.validation_source == "split"
