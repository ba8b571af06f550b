"""Read labelled texts from CSV/TSV, JSON Lines, Parquet or a `datasets` save_to_disk folder.

Row problems are collected, never raised: a user with a broken file should see every bad row
with its line number in one run, not fix them one at a time. Bad rows are skipped; the caller
decides (via `InputError`) whether any problem stops the run.
"""

from __future__ import annotations

import codecs
import csv
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tunewise.core.errors import Problem
from tunewise.data.columns import closest_column
from tunewise.data.sources import resolve

FORMATS = ".csv, .tsv, .jsonl, .json (one object per line), .parquet or a save_to_disk folder"
FIX_FORMAT = f"give {FORMATS}"
FIX_CSV = "quote fields holding commas, quotes or line breaks; double quotes inside quotes"
FIX_JSON = "write one complete JSON object per line"
FIX_JSONL = "write one object per line, e.g. pandas to_json(orient='records', lines=True)"
FIX_PARQUET = "re-export the file; it may be truncated or not Parquet at all"
FIX_SAVE = "save it with Dataset.save_to_disk, or export it to .parquet"
COLUMN_FLAGS = {"text_col": "--text-col", "label_col": "--label-col"}  # the commands' options


@dataclass
class Examples:
    """Labelled texts from one file, with the source line of each row for error messages."""

    texts: list[str]
    labels: list[str]
    lines: list[int]
    source: str
    meta: dict[str, list[str]] = field(default_factory=dict)  # extra columns kept, as text

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx: Sequence[int]) -> Examples:
        """Rows at `idx`, keeping their original line numbers so later errors still point home."""
        return Examples(
            [self.texts[i] for i in idx],
            [self.labels[i] for i in idx],
            [self.lines[i] for i in idx],
            self.source,
            {name: [values[i] for i in idx] for name, values in self.meta.items()},
        )


def write_examples(
    path: Path, ex: Examples, text_col: str, label_col: str, extra: Mapping | None = None
) -> Path:
    """Rows as CSV (by suffix) or JSON Lines: text, label, `ex.meta` and `extra` columns.

    What `prepare`, a run's held-out split and dataset versions write, readable back with
    `read_examples(path, text_col, label_col)`.
    """
    columns = {text_col: ex.texts, label_col: ex.labels, **ex.meta, **(extra or {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        if path.suffix.lower() == ".csv":
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows(zip(*columns.values(), strict=True))
            return path
        for values in zip(*columns.values(), strict=True):
            f.write(json.dumps(dict(zip(columns, values, strict=True)), ensure_ascii=False) + "\n")
    return path


def read_examples(
    path: str | Path,
    text_col: str,
    label_col: str,
    max_rows: int | None = None,
    field: str = "data.train",
    require_labels: bool = True,
    keep: Sequence[str] = (),
    flags: Mapping[str, str] | None = None,
) -> tuple[Examples, list[Problem]]:
    """Load one file; return its valid rows and every problem found, bad rows skipped.

    Only a missing file raises (`InputError` from `resolve`). With `require_labels=False` the
    label column may be absent and labels may be empty (stored as ""), e.g. for prediction input.
    `max_rows` keeps the first N valid rows and stops reading there. `keep` names extra columns
    (e.g. metadata to slice evaluation by) carried as text in `Examples.meta`; a kept column the
    file lacks is simply absent from `meta`, for the caller to report. `flags` maps `text_col`
    and `label_col` to the command's options (`--text-col`): a missing column's fix names the
    option to pass instead of the config key to set.
    """
    resolved = resolve(path, field)
    rows = _Rows(str(path), text_col, label_col, max_rows, require_labels, keep, flags)
    _read_into(resolved, rows)
    return rows.examples, rows.problems


def read_columns(
    path: str | Path, max_rows: int | None = None, field: str = "DATA"
) -> tuple[dict[str, list[str]], list[Problem]]:
    """Every column of a file as text ("" where blank), for `tunewise init` to guess from; the
    same readers, formats and problems as `read_examples`."""
    rows = _Rows(str(path), "", "", max_rows, require_labels=False, every_column=True)
    _read_into(resolve(path, field), rows)
    return rows.examples.meta, rows.problems


def _read_into(resolved: Path, rows: _Rows) -> None:
    reader = _reader_for(resolved)
    if reader is None:
        kind = resolved.suffix or resolved.name
        rows.problem(None, "file", f"unsupported file type '{kind}'", FIX_FORMAT)
    elif not rows.full:  # max_rows=0 reads nothing
        try:
            reader(resolved, rows)
        except OSError as exc:  # e.g. permissions, or a folder named like a file
            rows.problem(None, "file", f"cannot read the file ({exc})", "check the path")


class _Rows:
    """Collects valid rows and problems; holds the per-row checks every format shares.

    `every_column` keeps each column as text in `examples.meta` and checks nothing (for `init`).
    """

    def __init__(
        self,
        source: str,
        text_col: str,
        label_col: str,
        max_rows: int | None,
        require_labels: bool,
        keep: Sequence[str] = (),
        flags: Mapping[str, str] | None = None,
        every_column: bool = False,
    ):
        self.examples = Examples([], [], [], source)
        self.flags, self.every_column = flags, every_column
        self.keep = [c for c in keep if c not in (text_col, label_col)]
        self.problems: list[Problem] = []
        self.text_col, self.label_col = text_col, label_col
        self.max_rows, self.require_labels = max_rows, require_labels
        self.has_labels = require_labels

    @property
    def full(self) -> bool:
        return self.max_rows is not None and len(self.examples) >= self.max_rows

    @property
    def columns(self) -> list[str]:
        """The columns to read; the label column only if it exists or is required."""
        base = [self.text_col, self.label_col] if self.has_labels else [self.text_col]
        return list(dict.fromkeys(base + list(self.examples.meta)))

    def problem(self, line: int | None, field: str, message: str, fix: str = "") -> None:
        self.problems.append(Problem(self.examples.source, line, field, message, fix))

    def check_columns(self, found: Iterable[str], line: int | None) -> bool:
        """Report required columns missing from `found`, suggesting the closest existing name."""
        found = [str(name) for name in found]
        for name, count in Counter(found).items():
            if count > 1:
                places = ", ".join(str(i + 1) for i, col in enumerate(found) if col == name)
                message = f"column '{name}' appears {count} times in the header (columns {places})"
                self.problem(line, name, message, "rename or delete all but one of them")
        if len(set(found)) < len(found):
            return False  # which of them is meant? never guess
        if self.every_column:
            self.text_col = self.label_col = found[0] if found else ""
            self.has_labels, self.examples.meta = False, {col: [] for col in found}
            return bool(found)
        self.has_labels = self.label_col in found or self.require_labels
        self.examples.meta = {col: [] for col in self.keep if col in found}
        wanted = [("text_col", self.text_col)]
        if self.require_labels:
            wanted.append(("label_col", self.label_col))
        missing = [(key, col) for key, col in wanted if col not in found]
        listed = ", ".join(found) or "(none)"
        for key, col in missing:
            message = f"column '{col}' not found; the columns are: {listed}"
            other = self.label_col if key == "text_col" else self.text_col
            self.problem(line, col, message, self._column_fix(key, col, found, other))
        return not missing

    def _column_fix(self, key: str, col: str, found: list[str], other: str) -> str:
        """Name the likely column, and the option (a command's) or config key that sets it."""
        guess = closest_column(key, col, found, other if other in found else None)
        flag = (self.flags or {}).get(key)
        if guess is None:
            where = f"pass {flag}" if flag else f"set data.{key} to"
            return f"{where} one of the columns above"
        return f"did you mean '{guess}'? " + (
            f"pass {flag} {guess}" if flag else f"set data.{key}: {guess}"
        )

    def add(self, line: int, text: Any, label: Any, extra: Mapping[str, Any] | None = None) -> None:
        """Keep the row if its text and label are usable, else record why not."""
        if self.every_column:
            return self._add_as_text(line, extra or {})
        text = self._text(line, text)
        label = self._label(line, label)
        if text is not None and label is not None:
            self.examples.texts.append(text)
            self.examples.labels.append(label)
            self.examples.lines.append(line)
            for col, values in self.examples.meta.items():
                value = (extra or {}).get(col)
                values.append("" if _is_blank(value) else str(value).strip())

    def _add_as_text(self, line: int, values: Mapping[str, Any]) -> None:
        self.examples.texts.append("")
        self.examples.labels.append("")
        self.examples.lines.append(line)
        for col, kept in self.examples.meta.items():
            value = values.get(col)
            kept.append("" if _is_blank(value) else str(value).strip())

    def _text(self, line: int, value: Any) -> str | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            message = "text is missing" if value is None else "text is empty"
            self.problem(line, self.text_col, message, "fill in the text or delete the row")
            return None
        if not isinstance(value, str):
            got = type(value).__name__
            self.problem(line, self.text_col, f"text must be a string, got {got}", "quote it")
            return None
        return repair_characters(value).strip()

    def _label(self, line: int, value: Any) -> str | None:
        if _is_blank(value):
            if not self.require_labels:
                return ""
            self.problem(line, self.label_col, "label is missing", "add it or delete the row")
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            got = type(value).__name__
            self.problem(
                line,
                self.label_col,
                f"label must be a string or integer, got {got}",
                "give one class name or id per row",
            )
            return None
        if broken := broken_character(str(value)):
            self.problem(line, self.label_col, f"label has {broken}", FIX_CHARACTER)
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # ids read back as floats (e.g. via pandas with NaNs) match ints
        return str(value).strip()


BROKEN = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"
FIX_CHARACTER = "remove the character or fix how the file was exported (UTF-8 text)"


def repair_characters(text: str) -> str:
    """A text's NUL bytes and lone surrogates as U+FFFD, the character Unicode has for what is
    not text: the audit names each such row by its line and `prepare`'s unicode step removes
    them, where the tokenizer or a UTF-8 writer would fail on the originals."""
    return BROKEN.sub(REPLACEMENT, text)


def broken_character(text: str) -> str | None:
    """What makes a text unusable as input: a NUL byte or a lone surrogate (not valid
    Unicode: the tokenizer and every UTF-8 writer fail on it), with its position."""
    found = BROKEN.search(text)
    if found is None:
        return None
    ch, at = found.group(), found.start() + 1
    if ch == "\x00":
        return f"a NUL byte (\\x00) at character {at}"
    return f"a lone surrogate (\\u{ord(ch):04x}, invalid Unicode) at character {at}"


def _is_blank(value: Any) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    return value is None or (isinstance(value, str) and not value.strip())


def _reader_for(path: Path) -> Callable[[Path, _Rows], None] | None:
    if path.is_dir():
        return _read_datasets
    suffix = path.suffix.lower()
    readers: dict[str, Callable[..., None]] = {".csv": _read_csv, ".parquet": _read_parquet}
    readers.update({".tsv": _read_tsv, ".jsonl": _read_jsonl, ".json": _read_jsonl})
    return readers.get(suffix)


def _utf8_lines(fh: IO[bytes], rows: _Rows, bad: set[int]) -> Iterator[str]:
    """Decode line by line so each undecodable line is reported with its own line number.

    Bad lines are still yielded (with replacement characters) so CSV line counting stays exact;
    their numbers go into `bad` so the rows they belong to can be skipped.
    """
    for number, raw in enumerate(fh, 1):
        if number == 1 and raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            bad.add(number)
            rows.problem(number, "bytes", "file is UTF-16, not UTF-8", "re-save the file as UTF-8")
            return
        if number == 1:
            raw = raw.removeprefix(codecs.BOM_UTF8)
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad.add(number)
            column = len(raw[: exc.start].decode("utf-8", "replace")) + 1
            message = f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {column})"
            rows.problem(number, "bytes", message, "re-save the file as UTF-8")
            yield raw.decode("utf-8", "replace")


def _read_tsv(path: Path, rows: _Rows) -> None:
    _read_csv(path, rows, delimiter="\t")


def _read_csv(path: Path, rows: _Rows, delimiter: str = ",") -> None:
    """Read with the csv module; `line_num` gives exact start lines despite multi-line fields."""
    bad: set[int] = set()
    with open(path, "rb") as fh:
        reader = csv.reader(_utf8_lines(fh, rows, bad), delimiter=delimiter, strict=True)
        header = next((record for record in reader if record), None)
        if bad and (header is None or min(bad) <= reader.line_num):
            return  # the header is undecodable; its bytes problem says so
        if header is None:
            fix = f"add a header row, e.g. {rows.text_col},{rows.label_col}"
            rows.problem(None, "file", "file is empty (no header row)", fix)
            return
        header = [name.strip() for name in header]
        if not rows.check_columns(header, reader.line_num):
            return
        while not rows.full:
            start = reader.line_num + 1
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                rows.problem(start, "csv", f"malformed CSV ({exc})", FIX_CSV)
                continue
            if record and not bad.intersection(range(start, reader.line_num + 1)):
                _csv_row(rows, start, record, header)


def _csv_row(rows: _Rows, line: int, record: list[str], header: list[str]) -> None:
    if len(record) > len(header) and any(value.strip() for value in record[len(header) :]):
        message = f"row has {len(record)} fields but the header has {len(header)}"
        rows.problem(line, "csv", message, "quote the text if it contains the delimiter")
        return
    values = dict(zip(header, record, strict=False))
    rows.add(line, values.get(rows.text_col), values.get(rows.label_col), values)


def _read_jsonl(path: Path, rows: _Rows) -> None:
    """One JSON object per line; the first object's keys act as the header."""
    bad: set[int] = set()
    first = True
    with open(path, "rb") as fh:
        for number, line in enumerate(_utf8_lines(fh, rows, bad), 1):
            if number in bad or not line.strip():
                continue
            obj = _json_object(rows, number, line, first)
            if obj is _STOP:
                return
            if obj is None:
                continue
            if first and not rows.check_columns(obj, number):
                return
            first = False
            rows.add(number, obj.get(rows.text_col), obj.get(rows.label_col), obj)
            if rows.full:
                break


_STOP: Any = object()


def _json_object(rows: _Rows, number: int, line: str, first: bool) -> dict | None:
    """Parse one line; report malformed JSON and non-objects (returns None for those)."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        if first and (line.strip() in ("[", "{") or line.lstrip().startswith("[{")):
            rows.problem(number, "json", "the file is one JSON document, not JSON Lines", FIX_JSONL)
            return _STOP
        rows.problem(number, "json", f"malformed JSON ({exc.msg} at column {exc.colno})", FIX_JSON)
        return None
    if not isinstance(obj, dict):
        got = "an array" if isinstance(obj, list) else json.dumps(obj)[:40]
        rows.problem(number, "json", f"expected a JSON object, got {got}", FIX_JSON)
        return None
    return obj


def _read_parquet(path: Path, rows: _Rows) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
        if not rows.check_columns(names, None):
            return
        table = pq.read_table(path, columns=rows.columns)
    except (pa.ArrowException, OSError) as exc:
        rows.problem(None, "parquet", f"cannot read the Parquet file ({exc})", FIX_PARQUET)
        return
    _read_table(table, rows)


def _read_datasets(path: Path, rows: _Rows) -> None:
    """A `Dataset.save_to_disk` folder; a DatasetDict folder is refused with its split names."""
    import datasets

    if (path / "dataset_dict.json").exists():
        return _refuse_dataset_dict(path, rows)
    if not any((path / name).exists() for name in ("dataset_info.json", "state.json")):
        message = "not a save_to_disk folder (no dataset_info.json or state.json)"
        rows.problem(None, "datasets", message, FIX_FORMAT)
        return
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:  # datasets raises many unrelated types for a damaged folder
        rows.problem(None, "datasets", f"cannot load the dataset folder ({exc})", FIX_SAVE)
        return
    if isinstance(ds, datasets.DatasetDict):
        return _refuse_dataset_dict(path, rows)
    if rows.check_columns(ds.column_names, None):
        _read_table(ds.select_columns(rows.columns).with_format("arrow")[:], rows)


def _refuse_dataset_dict(path: Path, rows: _Rows) -> None:
    splits = sorted(p.name for p in path.iterdir() if p.is_dir())
    example = f"{rows.examples.source.rstrip('/')}/{splits[0] if splits else 'train'}"
    message = f"folder holds a DatasetDict with splits {', '.join(splits) or '(none)'}"
    rows.problem(None, "datasets", message, f"give one split's sub-folder, e.g. {example}")


def _read_table(table: Any, rows: _Rows) -> None:
    """Rows of a pyarrow Table; line = row index + 1 since columnar files have no lines."""
    texts = table.column(rows.text_col).to_pylist()
    labels = table.column(rows.label_col).to_pylist() if rows.has_labels else [None] * len(texts)
    extra = {col: table.column(col).to_pylist() for col in rows.examples.meta}
    for index, (text, label) in enumerate(zip(texts, labels, strict=True)):
        if rows.full:
            break
        rows.add(index + 1, text, label, {col: values[index] for col, values in extra.items()})
