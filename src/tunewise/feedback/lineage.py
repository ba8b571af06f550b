"""Dataset versions and `lineage.json`: which data, which model, which metrics, which decision.

Why: a promoted model must be traceable to the exact rows it learnt from. Each refinement writes
a version folder `RUN_DIR/versions/vN/` (train.csv, validation.csv, added.csv, feedback_test.csv,
rejected.jsonl, audit.json, the candidate run) and records every file's SHA-256 in lineage.json.
Version 0 is the run as trained, with the frozen test set every later candidate is compared on;
its hash is checked on each refinement so the yardstick cannot drift.

    doc = load(run_dir)            # {"current": 0, "versions": [...]}
    base = ensure_base(run_dir, cfg, doc)
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tunewise.core import rundir
from tunewise.core.errors import InputError, Problem
from tunewise.core.files import sha256_file
from tunewise.data.curate import concat_all, prepare_splits
from tunewise.data.load import Examples, read_examples, write_examples
from tunewise.data.validate import load_splits


def load(run_dir: Path) -> dict[str, Any]:
    path = run_dir / rundir.LINEAGE
    if not path.is_file():
        return {"current": 0, "versions": []}
    return json.loads(path.read_text())


def save(run_dir: Path, doc: dict[str, Any]) -> Path:
    """Write lineage.json atomically: a crash leaves the old file or the new one, never half."""
    path = run_dir / rundir.LINEAGE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    os.replace(tmp, path)
    return path


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def version_dir(run_dir: Path, version: int) -> Path:
    return run_dir / "versions" / f"v{version}"


def write_rows(path: Path, ex: Examples, text_col: str, label_col: str, extra=None) -> dict:
    """A CSV of text and label (plus `extra` columns); returns its record {path, sha256, rows}."""
    write_examples(path, ex, text_col, label_col, extra)
    return file_record(path, len(ex))


def file_record(path: Path, rows: int | None = None) -> dict:
    record: dict[str, Any] = {"path": str(path), "sha256": sha256_file(path)}
    if rows is not None:
        record["rows"] = rows
    return record


def read_rows(record: dict, text_col: str, label_col: str) -> Examples:
    """A version file, after checking it still has the content hash lineage.json recorded."""
    path = Path(record["path"])
    if not path.is_file() or sha256_file(path) != record["sha256"]:
        raise InputError(
            [
                Problem(
                    str(path),
                    None,
                    "sha256",
                    "changed or missing since lineage.json recorded it",
                    "restore the file; dataset versions are read-only",
                )
            ]
        )
    ex, problems = read_examples(path, text_col, label_col, field="version")
    if problems:
        raise InputError(problems)
    return ex


def ensure_base(run_dir: Path, cfg, doc: dict) -> dict:
    """Version 0: the rows the run trained and validated on, and its frozen test set."""
    if doc["versions"]:
        return doc["versions"][0]

    splits = load_splits(cfg.data, cfg.seed, oos_label=cfg.eval.oos_label())
    if splits.test is None:
        raise InputError(
            [
                Problem(
                    str(run_dir / rundir.CONFIG),
                    None,
                    "data.test",
                    "no test set: nothing to compare a candidate on",
                    "set data.test in the run's config",
                )
            ]
        )
    folder = version_dir(run_dir, 0)
    folder.mkdir(parents=True, exist_ok=True)
    if (run_dir / rundir.PREPARE).exists():  # the run prepared its data: so does version 0
        splits = prepare_splits(cfg, splits, folder)
    assert splits.test is not None
    cols = (cfg.data.text_col, cfg.data.label_col)
    sources = [p for p in (cfg.data.train, cfg.data.validation, cfg.data.test) if p]
    base = {
        "version": 0,
        "parent": None,
        "created_at": now(),
        "sources": {str(p): sha256_file(Path(p)) for p in sources if Path(p).is_file()},
        "data": {
            name: write_rows(folder / f"{name}.csv", _with_oos(splits, name), *cols)
            for name in ("train", "validation", "test")
        },
        "model": {
            "path": str(run_dir / rundir.MODEL),
            "sha256": sha256_file(run_dir / rundir.MODEL / "model.safetensors"),
        },
        "decision": {"promoted": True, "reasons": ["the run as trained"]},
    }
    doc["versions"].append(base)
    doc["current"] = 0
    save(run_dir, doc)
    return base


def _with_oos(splits, name: str) -> Examples:
    """A split's rows with its out-of-scope examples (eval.oos.label), as the run read them."""
    return concat_all([getattr(splits, name), splits.oos.get(name)])


def current_version(doc: dict) -> dict:
    return next(v for v in doc["versions"] if v["version"] == doc["current"])
