"""`tunewise audit` and `tunewise prepare`, and the same two steps inside `tunewise run`.

Why the commands and `run` share these functions: a data set that `tunewise audit` passes is
exactly one that `run` will not stop on, and `tunewise prepare` writes exactly the rows `run`
would train on.

    findings = tunewise.audit("train.csv", test="test.csv", label_col="category", out="audit")
    summary = tunewise.prepare("train.csv", "clean.csv", pii="redact")
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from tunewise.config import RunConfig, load_config
from tunewise.data.audit import audit_examples
from tunewise.data.clean import Prepared, build_transforms, prepare_examples, transform
from tunewise.data.dedup import exact_key
from tunewise.data.load import Examples, read_examples
from tunewise.data.pii import PIIDetector
from tunewise.data.validate import Splits, check_splits
from tunewise.errors import BlockingFinding, InputError, Problem
from tunewise.findings import SEVERITIES, Finding, has_errors, print_findings, write_findings

console = Console(stderr=True)
OUT_FORMATS = (".csv", ".jsonl", ".json")


def audit(
    data: str | Path,
    test: str | Path | None = None,
    text_col: str | None = None,
    label_col: str | None = None,
    out: str | Path = "audit",
    config: str | Path | None = None,
) -> list[Finding]:
    """Audit a labelled file (and its test file); write OUT/audit.json and OUT/audit.html."""
    cfg = _load(config, data)
    text_col, label_col = text_col or cfg.data.text_col, label_col or cfg.data.label_col
    train_ex, test_ex = _read_or_fail([(data, "DATA"), (test, "--test")], text_col, label_col)
    assert train_ex is not None
    findings, summary = run_audit(cfg, train_ex, test_ex)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_outputs(out, findings, summary)
    return findings


def _load(config: str | Path | None, data: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """The config's sections (defaults without one); DATA stands in for data.train."""
    if not config and not overrides:
        return load_config()
    return load_config(config or {}, [f"data.train={json.dumps(str(data))}", *overrides])


def _read_or_fail(files: list, text_col: str, label_col: str) -> list[Examples | None]:
    """Read every given file; all problems of all files in one InputError (exit 2)."""
    problems: list[Problem | str] = []
    parts: list[Examples | None] = []
    for path, field in files:
        if path is None:
            parts.append(None)
            continue
        try:
            ex, found = read_examples(path, text_col, label_col, field=field)
        except InputError as exc:
            problems += exc.problems
            parts.append(None)
            continue
        problems += found
        if not len(ex) and not found:
            problems.append(Problem(str(path), None, "rows", "no rows", "add labelled rows"))
        parts.append(ex)
    if problems:
        raise InputError(problems)
    return parts


def run_audit(cfg: RunConfig, train: Examples, test: Examples | None) -> tuple[list, dict]:
    """All checks with the tokenizer of `model.name` and the encoder of `audit.embedding_model`."""
    from tunewise.models.load import load_tokenizer

    console.log(f"audit: {len(train)} training rows" + (f", {len(test)} test rows" if test else ""))
    tokenizer = load_tokenizer(cfg.model.name, cfg.model.trust_remote_code)
    embedder = _embedder(cfg) if cfg.audit.label_noise else None
    return audit_examples(
        train, test, cfg.audit, tokenizer, cfg.model.max_length, embedder, cfg.seed
    )


def _embedder(cfg: RunConfig):
    """Texts -> normalised sentence embeddings of the audit encoder (bf16 where supported)."""

    def embed_texts(texts: list[str]):
        from tunewise.data.encode import encode
        from tunewise.evaluation.predict import embed
        from tunewise.models.load import load_encoder, load_tokenizer
        from tunewise.training.loop import bf16_supported

        name = cfg.audit.embedding_model
        tokenizer, encoder = load_tokenizer(name), load_encoder(name)
        bf16 = bf16_supported(next(encoder.parameters()).device)
        return embed(encoder, encode(tokenizer, texts, None, cfg.model.max_length), 256, bf16)

    return embed_texts


def write_outputs(out: Path, findings: list[Finding], summary: dict) -> None:
    """audit.json (the contract's list of findings), audit.html, and the terminal table."""
    from tunewise.report.audit_html import write_audit_html

    write_findings(out / "audit.json", findings)
    write_audit_html(out / "audit.html", findings, summary)
    ranked = sorted(findings, key=lambda f: SEVERITIES.index(f.severity))
    print_findings(ranked, f"audit ({summary['seconds']} s)")
    console.log(f"audit written: {out / 'audit.json'}, {out / 'audit.html'}")


def curate(cfg: RunConfig, splits: Splits, run_dir: Path) -> Splits:
    """Audit, stop on error findings (unless audit.fail_on: never), then prepare the splits."""
    findings = audit_splits(cfg, splits, run_dir)
    if has_errors(findings) and cfg.audit.fail_on == "error":
        raise BlockingFinding(
            f"the data audit found errors; see {run_dir / 'audit.json'} and "
            f"{run_dir / 'audit.html'} (set audit.fail_on=never to train anyway)"
        )
    return prepare_splits(cfg, splits, run_dir)


def audit_splits(cfg: RunConfig, splits: Splits, run_dir: Path) -> list[Finding]:
    """The audit inside `run`: train (with its validation split, as one file) against test."""
    train = splits.train
    if splits.validation_source == "split":  # both parts came from one file: audit it whole
        train = _concat(splits.train, splits.validation)
    findings, summary = run_audit(cfg, train, splits.test)
    write_outputs(run_dir, findings, summary)
    return findings


def _concat(a: Examples, b: Examples) -> Examples:
    order = sorted(range(len(a) + len(b)), key=lambda i: (a.lines + b.lines)[i])
    both = Examples(
        a.texts + b.texts,
        a.labels + b.labels,
        a.lines + b.lines,
        a.source,
        {k: v + b.meta.get(k, [""] * len(b)) for k, v in a.meta.items()},
    )
    return both.subset(order)


# --- prepare --------------------------------------------------------------------------------


def prepare(
    data: str | Path,
    out: str | Path,
    config: str | Path | None = None,
    pii: str | None = None,
    text_col: str | None = None,
    label_col: str | None = None,
    augment: bool = False,
) -> dict:
    """Clean DATA into OUT; every removed row goes to OUT's `.dropped.jsonl` with its reason."""
    out = Path(out)
    cfg = _load(config, data, [f"prepare.pii={pii}"] if pii else [])
    if out.suffix.lower() not in OUT_FORMATS:
        raise InputError(
            [
                Problem(
                    str(out),
                    None,
                    "--out",
                    f"unsupported output type '{out.suffix}'",
                    "name the output .csv or .jsonl",
                )
            ]
        )
    text_col, label_col = text_col or cfg.data.text_col, label_col or cfg.data.label_col
    (ex,) = _read_or_fail([(data, "DATA")], text_col, label_col)
    assert ex is not None
    prepared = prepare_examples(ex, cfg.prepare)
    if augment and cfg.prepare.augment is not None:
        prepared = _augmented(prepared, cfg)
    elif cfg.prepare.augment is not None:
        console.log(
            "prepare.augment is set but not applied: pass --augment if DATA is training data"
        )
    _write_rows(out, prepared.examples, text_col, label_col)
    summary = _summary(ex, prepared, out)
    dropped = dropped_path(out)
    _write_jsonl(dropped, prepared.dropped)
    out.with_name(out.stem + ".prepare.json").write_text(json.dumps(summary, indent=1))
    print_prepare(summary)
    return summary


def dropped_path(out: Path) -> Path:
    """clean.csv -> clean.dropped.jsonl, beside the cleaned file."""
    return out.with_name(out.stem + ".dropped.jsonl")


def _summary(ex: Examples, prepared: Prepared, out: Path) -> dict:
    return {
        "input": ex.source,
        "output": str(out),
        "rows_in": len(ex),
        "rows_out": len(prepared.examples),
        "dropped": len(prepared.dropped),
        "steps": prepared.steps,
        "pii": prepared.pii,
    }


def print_prepare(summary: dict) -> None:
    """Rows changed or dropped per step, as a table on the terminal."""
    from rich.table import Table

    table = Table(title=f"prepare: {summary['rows_in']} rows in, {summary['rows_out']} out")
    table.add_column("step")
    table.add_column("rows changed", justify="right")
    table.add_column("rows dropped", justify="right")
    table.add_column("rows added", justify="right")
    for s in summary["steps"]:
        cells = (s.get("changed", ""), s.get("dropped", ""), s.get("added", ""))
        table.add_row(s["step"], *(str(c) for c in cells))
    Console().print(table)
    if summary["pii"]:
        found = ", ".join(f"{k} {v}" for k, v in sorted(summary["pii"].items()))
        Console().print(f"personal data found: {found}")


def _write_rows(path: Path, ex: Examples, text_col: str, label_col: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow([text_col, label_col])
            writer.writerows(zip(ex.texts, ex.labels, strict=True))
        return
    _write_jsonl(
        path, [{text_col: t, label_col: y} for t, y in zip(ex.texts, ex.labels, strict=True)]
    )


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def _augmented(prepared: Prepared, cfg: RunConfig) -> Prepared:
    """Add augmented copies of the (already cleaned) training rows."""
    from tunewise.data.augment import augment_examples

    aug = cfg.prepare.augment
    assert aug is not None
    extra = augment_examples(prepared.examples, aug, cfg.model.max_length)
    merged = _concat(prepared.examples, extra)  # each new row beside its source row
    steps = prepared.steps + [{"step": f"augment ({aug.method})", "added": len(extra)}]
    return Prepared(merged, prepared.dropped, steps, prepared.pii)


def prepare_splits(cfg: RunConfig, splits: Splits, run_dir: Path) -> Splits:
    """`prepare` inside `run`: transform every split alike, drop and augment only in train.

    A validation row that equals a kept training row (possible when validation was split off a
    file with duplicates) is dropped too, so validation never scores memorised rows.
    """
    classic = [k for k in ("stem", "lemmatize", "stopwords") if getattr(cfg.prepare, k)]
    if classic:
        console.log(
            f"[yellow]warning:[/] prepare.{', prepare.'.join(classic)} suit TF-IDF "
            f"baselines; a transformer ({cfg.model.name}) reads whole sentences better"
        )
    detector = PIIDetector().fit(splits.train.texts) if cfg.prepare.pii != "off" else None
    prepared = prepare_examples(splits.train, cfg.prepare, detector=detector)
    steps = build_transforms(cfg.prepare, detector)
    val, _ = transform(splits.validation, steps)
    val, val_dropped = _drop_seen(val, splits.validation, prepared.examples)
    test = transform(splits.test, steps)[0] if splits.test is not None else None
    if cfg.prepare.augment is not None:
        prepared = _augmented(prepared, cfg)
    problems = check_splits(prepared.examples, val, test, cfg.data.label_col)
    if problems:
        raise InputError(problems)
    summary = _summary(splits.train, prepared, run_dir)
    summary["validation_dropped"] = len(val_dropped)
    _write_jsonl(run_dir / "dropped.jsonl", prepared.dropped + val_dropped)
    (run_dir / "prepare.json").write_text(json.dumps(summary, indent=1))
    print_prepare(summary)
    return Splits(prepared.examples, val, test, splits.labels, splits.validation_source)


def prepare_text(cfg: RunConfig, ex: Examples) -> Examples:
    """The text steps of `prepare` alone (no drops): how `evaluate` reads a test file, so the
    tuned model is scored on text prepared the way its training text was."""
    detector = PIIDetector().fit(ex.texts) if cfg.prepare.pii == "redact" else None
    return transform(ex, build_transforms(cfg.prepare, detector))[0]


def _drop_seen(val: Examples, original: Examples, train: Examples) -> tuple[Examples, list]:
    seen = {exact_key(t) for t in train.texts}
    gone = [i for i, t in enumerate(val.texts) if exact_key(t) in seen]
    dropped = [
        {
            "file": val.source,
            "line": val.lines[i],
            "text": original.texts[i],
            "label": val.labels[i],
            "step": "validation",
            "reason": "validation row equal to a training row",
        }
        for i in gone
    ]
    keep = sorted(set(range(len(val))) - set(gone))
    return val.subset(keep), dropped
