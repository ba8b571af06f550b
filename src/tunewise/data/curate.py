"""The data stage: audit and prepare, for `tunewise audit`, `tunewise prepare` and every run.

Why the commands and the runs share these functions: a data set that `tunewise audit` passes is
exactly one that `run` will not stop on, and `tunewise prepare` writes exactly the rows `run`,
`train` and every `tune` trial train on.

    findings, summary = audit_splits(cfg, splits)      # inside a run (pipeline.py)
    splits = prepare_splits(cfg, splits, run_dir)      # out_dir None: nothing written
    summary = tunewise.prepare("train.csv", "clean.csv", pii="redact")
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from tunewise.config import RunConfig, load_config
from tunewise.core import rundir
from tunewise.core.console import console, results, step_progress
from tunewise.core.device import bf16_supported, model_device
from tunewise.core.errors import InputError, Problem
from tunewise.core.files import write_jsonl
from tunewise.core.findings import Finding
from tunewise.data.audit import audit_examples
from tunewise.data.augment import augment_examples
from tunewise.data.clean import Prepared, build_transforms, prepare_examples, transform
from tunewise.data.dedup import exact_key
from tunewise.data.load import COLUMN_FLAGS, Examples, read_examples, write_examples
from tunewise.data.pii import PIIDetector
from tunewise.data.validate import Splits, check_splits
from tunewise.models.embed import text_embedder
from tunewise.models.load import load_encoder, load_tokenizer

OUT_FORMATS = (".csv", ".jsonl", ".json")


def command_config(
    config: str | Path | None, data: str | Path, overrides: Sequence[str] = ()
) -> RunConfig:
    """The config's sections (defaults without one); DATA stands in for data.train."""
    if not config and not overrides:
        return load_config()
    return load_config(config or {}, [f"data.train={json.dumps(str(data))}", *overrides])


def read_files(files: list, text_col: str, label_col: str) -> list[Examples | None]:
    """Read every given file (named on a command line: a missing column's fix names the
    --text-col/--label-col option); all problems of all files in one InputError (exit 2)."""
    problems: list[Problem | str] = []
    parts: list[Examples | None] = []
    for path, field in files:
        if path is None:
            parts.append(None)
            continue
        try:
            ex, found = read_examples(path, text_col, label_col, field=field, flags=COLUMN_FLAGS)
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
    console.log(f"audit: {len(train)} training rows" + (f", {len(test)} test rows" if test else ""))
    tokenizer = load_tokenizer(cfg.model.name, cfg.model.trust_remote_code)
    embedder = _embedder(cfg) if cfg.audit.label_noise else None
    return audit_examples(
        train, test, cfg.audit, tokenizer, cfg.model.max_length, embedder, cfg.seed
    )


def _embedder(cfg: RunConfig):
    """Texts -> normalised sentence embeddings of the audit encoder (bf16 where supported)."""
    name = cfg.audit.embedding_model

    def embed_texts(texts: list[str]):  # the encoder loads only if the label-noise check runs
        encoder = load_encoder(name)
        bf16 = bf16_supported(model_device(encoder))
        tokenizer = load_tokenizer(name)
        with step_progress("audit: label-noise embedding", len(texts)) as advance:
            return text_embedder(encoder, tokenizer, cfg.model.max_length, 256, bf16, advance)(
                texts
            )

    return embed_texts


def audit_splits(cfg: RunConfig, splits: Splits) -> tuple[list[Finding], dict]:
    """The audit inside a run: train (with its validation split, as one file) against test."""
    train = splits.train
    if splits.validation_source == "split":  # both parts came from one file: audit it whole
        train = concat(splits.train, splits.validation)
    return run_audit(cfg, train, splits.test)


def concat_all(parts: Sequence[Examples | None]) -> Examples:
    """The given parts as one, in line order (None parts skipped; at least one given)."""
    given = [p for p in parts if p is not None]
    out = given[0]
    for part in given[1:]:
        out = concat(out, part)
    return out


def concat(a: Examples, b: Examples) -> Examples:
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
    cfg = command_config(config, data, [f"prepare.pii={pii}"] if pii else [])
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
    (ex,) = read_files([(data, "DATA")], text_col, label_col)
    assert ex is not None
    prepared = prepare_examples(ex, cfg.prepare)
    if augment and cfg.prepare.augment is not None:
        prepared = _augmented(prepared, cfg)
    elif cfg.prepare.augment is not None:
        console.log(
            "prepare.augment is set but not applied: pass --augment if DATA is training data"
        )
    write_examples(out, prepared.examples, text_col, label_col)
    summary = _summary(ex, prepared, out)
    dropped = dropped_path(out)
    write_jsonl(dropped, prepared.dropped)
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
    """Rows changed or dropped per step, as a table on the terminal; one line when no step
    changed anything."""
    from rich.table import Table

    title = f"prepare: {summary['rows_in']} rows in, {summary['rows_out']} out"
    if any(s.get(k) for s in summary["steps"] for k in ("changed", "dropped", "added")):
        table = Table(title=title)
        table.add_column("step")
        table.add_column("rows changed", justify="right")
        table.add_column("rows dropped", justify="right")
        table.add_column("rows added", justify="right")
        for s in summary["steps"]:
            cells = (s.get("changed", ""), s.get("dropped", ""), s.get("added", ""))
            table.add_row(s["step"], *(str(c) for c in cells))
        results.print(table)
    else:  # a log line like the others, not an empty table
        console.log(f"{title}, none changed")
    if summary["pii"]:  # reported even when no row changed (--pii report)
        found = ", ".join(f"{k} {v}" for k, v in sorted(summary["pii"].items()))
        results.print(f"personal data found: {found}")


def _augmented(prepared: Prepared, cfg: RunConfig) -> Prepared:
    """Add augmented copies of the (already cleaned) training rows."""
    aug = cfg.prepare.augment
    assert aug is not None
    extra = augment_examples(prepared.examples, aug, cfg.model.max_length)
    merged = concat(prepared.examples, extra)  # each new row beside its source row
    steps = prepared.steps + [{"step": f"augment ({aug.method})", "added": len(extra)}]
    return Prepared(merged, prepared.dropped, steps, prepared.pii)


def prepare_splits(cfg: RunConfig, splits: Splits, out_dir: Path | None = None) -> Splits:
    """`prepare` inside a run: transform every split alike, drop and augment only in train.

    A validation row that equals a kept training row (possible when validation was split off a
    file with duplicates) is dropped too, so validation never scores memorised rows. With
    `out_dir`, every dropped row goes to its dropped.jsonl and the counts to prepare.json.
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
    oos = {name: transform(ex, steps)[0] for name, ex in splits.oos.items()}  # text steps only
    if cfg.prepare.augment is not None:
        prepared = _augmented(prepared, cfg)
    problems = check_splits(prepared.examples, val, test, cfg.data.label_col)
    if problems:
        raise InputError(problems)
    if out_dir is not None:
        summary = _summary(splits.train, prepared, out_dir)
        summary["validation_dropped"] = len(val_dropped)
        write_jsonl(out_dir / rundir.DROPPED, prepared.dropped + val_dropped)
        (out_dir / rundir.PREPARE).write_text(json.dumps(summary, indent=1))
        print_prepare(summary)
    return Splits(prepared.examples, val, test, splits.labels, splits.validation_source, oos=oos)


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
