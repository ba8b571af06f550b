"""What `refine` may learn from: feedback and newly labelled rows, collected and audited.

Why audit before training: testers paste real customer messages (PII), say the same thing twice
(duplicates), contradict each other or the training labels (conflicts), and sometimes type a
query that is in the frozen test set (leakage: training on it would inflate the very score the
promotion gate reads). Every row that is not used is kept with its reason, so nothing a tester
said is silently lost.

    rows, rejected = collect(read_feedback(run_dir), ["to_label.csv"], cfg)
    accepted, rejected2, findings = audit_rows(rows, labels, train, test, cfg)
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

from tunewise.core.errors import InputError
from tunewise.core.files import sha256_file
from tunewise.core.findings import Finding
from tunewise.data.dedup import DuplicateIndex, exact_key, near_key
from tunewise.data.load import Examples, read_examples
from tunewise.data.pii import PIIDetector
from tunewise.feedback.store import OUT_OF_SCOPE

EVAL_SHARE = 0.25  # share of accepted feedback held out (by text hash) as the feedback test set


@dataclass(frozen=True)
class Row:
    """One labelled text on its way into a dataset version; `origin` says where it came from."""

    text: str
    label: str
    origin: str  # "feedback:<id>" or "<file>:<line>"
    kind: str  # "feedback" or "data"
    reason: str = ""  # why it was rejected (rejected rows only)
    code: str = ""  # the finding code of that reason


def collect(feedback: list[dict], data_files: list[str], cfg) -> tuple[list[Row], list[Row]]:
    """Labelled rows from feedback (a correct verdict confirms the prediction, an incorrect one
    with a correction gives the label) and from labelled files; unusable ones with a reason.
    A tester's `out_of_scope` becomes an out-of-scope example (label eval.oos.label)."""
    rows: list[Row] = []
    rejected: list[Row] = []
    for item in feedback:
        row = _out_of_scope(_feedback_row(item), cfg.eval.oos_label())
        (rejected if row.reason else rows).append(row)
    for path in data_files:
        for row in _file_rows(path, cfg.data.text_col, cfg.data.label_col):
            (rejected if row.reason else rows).append(row)
    return rows, rejected


def _feedback_row(item: dict) -> Row:
    origin = f"feedback:{item.get('id')}"
    text = (item.get("text") or "").strip()
    verdict = item.get("verdict")
    label = item.get("prediction") if verdict == "correct" else item.get("correction")
    row = Row(text, (label or "").strip(), origin, "feedback")
    if not text:
        return replace(row, reason="no text stored with this feedback", code="empty-or-garbage")
    if not row.label:
        why = "marked incorrect without a correction: no label to learn"
        return replace(row, reason=why, code="empty-or-garbage")
    return row


def _out_of_scope(row: Row, oos_label: str | None) -> Row:
    if row.reason or row.label != OUT_OF_SCOPE:
        return row
    if oos_label is None:
        why = "marked out of scope, but eval.oos is off: set eval.oos to learn such rows"
        return replace(row, reason=why, code="conflicting-labels")
    return replace(row, label=oos_label)


def _file_rows(path: str, text_col: str, label_col: str) -> list[Row]:
    ex, problems = read_examples(path, text_col, label_col, field="--data", require_labels=False)
    if problems:
        raise InputError(problems)
    out = []
    for text, label, line in zip(ex.texts, ex.labels, ex.lines, strict=True):
        row = Row(text.strip(), label.strip(), f"{path}:{line}", "data")
        if not row.label:
            row = replace(row, reason="not labelled yet", code="empty-or-garbage")
        out.append(row)
    return out


def audit_rows(
    rows: list[Row], labels: list[str], train: Examples, test: Examples, threshold: float = 0.85
) -> tuple[list[Row], list[Row], list[Finding]]:
    """Keep rows that are new, agree with training labels and each other, and are not in the
    frozen test set; redact PII in the kept ones. Returns (accepted, rejected, findings).
    `labels` includes the out-of-scope label when those rows are wanted."""
    known = set(labels)
    rejected = [
        _reject(r, f"label '{r.label}' is not one the model knows", "conflicting-labels")
        for r in rows
        if r.label not in known
    ]
    rows = [r for r in rows if r.label in known]
    rows, leaked = _leakage(rows, test, threshold)
    rows, clashing = _conflicts(rows, train)
    rows, repeated = _duplicates(rows, train)
    rows, pii = _redact(rows, train.texts)
    rejected += leaked + clashing + repeated
    return rows, rejected, _findings(rejected, pii, len(rows))


def _reject(row: Row, reason: str, code: str) -> Row:
    return replace(row, reason=reason, code=code)


def _leakage(rows: list[Row], test: Examples, threshold: float) -> tuple[list[Row], list[Row]]:
    """Rows equal or near (character 3-gram Jaccard ≥ threshold) to a frozen test row."""
    index = DuplicateIndex(threshold).fit(test.texts)
    exact = index.exact_matches([r.text for r in rows])
    near = index.near_matches([r.text for r in rows])
    kept, gone = [], []
    for row, same, close in zip(rows, exact, near, strict=True):
        hit = same[0] if same else (close[0][0] if close else None)
        if hit is None:
            kept.append(row)
        else:
            where = f"{test.source}:{test.lines[hit]}"
            gone.append(_reject(row, f"in the frozen test set ({where})", "leakage"))
    return kept, gone


def _conflicts(rows: list[Row], train: Examples) -> tuple[list[Row], list[Row]]:
    """Rows whose text (up to case and punctuation) is in training under another label, or is
    given two labels by new rows."""
    trained: dict[str, set[str]] = defaultdict(set)
    for text, label in zip(train.texts, train.labels, strict=True):
        trained[near_key(text)].add(label)
    offered: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        offered[near_key(row.text)].add(row.label)
    kept, gone = [], []
    for row in rows:
        key = near_key(row.text)
        if trained[key] and row.label not in trained[key]:
            why = f"training labels this text '{sorted(trained[key])[0]}'"
            gone.append(_reject(row, why, "conflicting-labels"))
        elif len(offered[key]) > 1:
            why = f"new rows give this text {len(offered[key])} labels: {sorted(offered[key])}"
            gone.append(_reject(row, why, "conflicting-labels"))
        else:
            kept.append(row)
    return kept, gone


def _duplicates(rows: list[Row], train: Examples) -> tuple[list[Row], list[Row]]:
    """Rows already in training with the same label, or repeating an earlier new row."""
    seen = {near_key(t) for t in train.texts}
    kept, gone = [], []
    for row in rows:
        key = near_key(row.text)
        if key in seen:
            gone.append(_reject(row, "already in the training data", "duplicate"))
        else:
            seen.add(key)
            kept.append(row)
    return kept, gone


def _redact(rows: list[Row], context: list[str]) -> tuple[list[Row], dict[str, int]]:
    """PII replaced by typed placeholders ("[EMAIL]"): kept rows never carry it into training."""
    detector = PIIDetector().fit([*context, *(r.text for r in rows)])
    counts: dict[str, int] = defaultdict(int)
    out = []
    for row in rows:
        text, spans = detector.redact(row.text)
        for span in spans:
            counts[span.type] += 1
        out.append(replace(row, text=text) if spans else row)
    return out, dict(counts)


def _findings(rejected: list[Row], pii: dict[str, int], kept: int) -> list[Finding]:
    by_code: dict[str, list[Row]] = defaultdict(list)
    for row in rejected:
        by_code[row.code].append(row)
    findings = [
        Finding(
            code,
            "warning",
            f"{len(group)} new row(s) not used: {group[0].reason}",
            "see rejected.jsonl for every row and its reason",
            {
                "rows": [
                    {"origin": r.origin, "text": r.text[:200], "label": r.label, "reason": r.reason}
                    for r in group[:10]
                ]
            },
        )
        for code, group in sorted(by_code.items())
    ]
    if pii:
        findings.append(
            Finding(
                "pii",
                "info",
                f"redacted {sum(pii.values())} PII span(s) in the {kept} kept rows",
                "placeholders such as [EMAIL] replace them in the dataset version",
                {"types": pii},
            )
        )
    return findings


def held_out(text: str, share: float = EVAL_SHARE) -> bool:
    """Whether a feedback text belongs to the feedback test set: a hash of its text decides, so
    the same text lands on the same side in every refinement and is never trained on later."""
    digest = hashlib.sha256(exact_key(text).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < share


def split_feedback(
    rows: list[Row], share: float = EVAL_SHARE, oos_label: str | None = None
) -> tuple[list[Row], list[Row]]:
    """(rows to train on, feedback test rows): file rows always train; feedback rows by hash;
    out-of-scope examples always go to the training file (where the threshold reads them)."""
    evaluate = [
        r for r in rows if r.kind == "feedback" and r.label != oos_label and held_out(r.text, share)
    ]
    chosen = {id(r) for r in evaluate}
    return [r for r in rows if id(r) not in chosen], evaluate


def rows_to_examples(rows: list[Row], source: str) -> Examples:
    return Examples(
        [r.text for r in rows], [r.label for r in rows], list(range(2, len(rows) + 2)), source
    )


def data_file_hashes(files: list[str]) -> dict[str, str]:

    return {str(f): sha256_file(Path(f)) for f in files}
