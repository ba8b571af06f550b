"""`tunewise refine`: learn from feedback and new labels, promote only without regression.

The loop: collect corrections and newly labelled rows → audit them (intake.py) → a new dataset
version with content hashes (lineage.py) → retrain with the run's config (or the best config of
`tunewise tune`) → score the current and the candidate model on the same frozen test rows and on
the held-out feedback rows, paired (bootstrap CI of the difference, McNemar) → promote only if
no accuracy (test, feedback) or macro-F1 (test) falls by more than `tolerance`.

    tunewise refine runs/banking77 --data to_label.csv      # exit 1 with the reasons if blocked
    decision = refine("runs/banking77", data=["to_label.csv"])
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from tunewise.config import load_config
from tunewise.core import rundir
from tunewise.core.console import console
from tunewise.core.errors import InputError, Problem
from tunewise.core.findings import write_findings
from tunewise.data.encode import encode
from tunewise.data.load import Examples
from tunewise.data.validate import Splits, split_out_oos
from tunewise.evaluation import oos_eval
from tunewise.evaluation.compare import compare
from tunewise.evaluation.metrics import classification_metrics
from tunewise.evaluation.predict import predict_logits
from tunewise.feedback import intake, lineage
from tunewise.feedback.store import read_feedback
from tunewise.models.load import load_trained_classifier
from tunewise.training.classifier import train_classifier

GATED = (("test", "accuracy"), ("test", "macro_f1"), ("feedback", "accuracy"))


def refine(
    run_dir: str | Path,
    feedback_db: str | None = None,
    data: Sequence[str] = (),
    tolerance: float = 0.01,
    eval_share: float = intake.EVAL_SHARE,
) -> dict[str, Any]:
    """One refinement; returns the version record (`promoted`, `reasons`, `metrics`, ...)."""
    run_dir = Path(run_dir)
    cfg, config_source = _checked(run_dir, data, tolerance)
    rundir.lock(run_dir)  # it versions the data and may swap model/: one writer
    feedback = _feedback(run_dir, feedback_db, data)
    doc = lineage.load(run_dir)
    base = lineage.ensure_base(run_dir, cfg, doc)
    parent = lineage.current_version(doc)
    cols = (cfg.data.text_col, cfg.data.label_col)
    train = lineage.read_rows(parent["data"]["train"], *cols)
    test = lineage.read_rows(base["data"]["test"], *cols)
    labels = _labels(run_dir / rundir.MODEL)
    oos_label = cfg.eval.oos_label()  # out-of-scope examples: kept, never a class
    rows, rejected = intake.collect(feedback, list(data), cfg)
    known = [*labels, oos_label] if oos_label else labels
    accepted, refused, findings = intake.audit_rows(rows, known, train, test)
    to_train, feedback_test = intake.split_feedback(accepted, eval_share, oos_label)
    version = max(v["version"] for v in doc["versions"]) + 1
    record: dict[str, Any] = {
        "version": version,
        "parent": parent["version"],
        "created_at": lineage.now(),
        "config_source": config_source,
        "inputs": _inputs(feedback_db or str(run_dir / rundir.FEEDBACK_DB), feedback, data),
        "intake": _intake_summary(rows, rejected + refused, to_train, feedback_test),
    }
    if not to_train:
        record["decision"] = {"promoted": False, "reasons": ["no new labelled rows to learn from"]}
        _print(record)
        return record
    folder = lineage.version_dir(run_dir, version)
    record["data"] = _write_version(folder, parent, train, to_train, feedback_test, cols)
    record["data"]["test"] = base["data"]["test"]
    _write_rejected(folder, rejected + refused)
    write_findings(folder / rundir.AUDIT, findings)
    candidate = _retrain(cfg, folder, record["data"], labels)
    test, _ = split_out_oos(test, oos_label)  # accuracy is over the intents
    record["metrics"] = _score(
        cfg, run_dir / rundir.MODEL, candidate / rundir.MODEL, test, feedback_test
    )
    record["decision"] = gate(record["metrics"], tolerance)
    record["model"] = {
        "path": str(candidate / rundir.MODEL),
        "sha256": lineage.sha256_file(candidate / rundir.MODEL / "model.safetensors"),
    }
    doc["versions"].append(record)
    if record["decision"]["promoted"]:
        _promote(run_dir, doc, candidate / rundir.MODEL)
        doc["current"] = version
        record["oos"] = _refit_detector(cfg, run_dir, record["data"])
    lineage.save(run_dir, doc)
    _print(record)
    return record


def _checked(run_dir: Path, data: Sequence[str], tolerance: float):
    """Usage problems before any model loads; the config to retrain with and where it came from."""

    problems = []
    if not (run_dir / rundir.MODEL).is_dir() or not (run_dir / rundir.CONFIG).is_file():
        problems.append(
            Problem(
                str(run_dir),
                None,
                "run directory",
                "no model/ and config.yaml",
                "give a finished run directory (tunewise run)",
            )
        )
    problems += [
        Problem(str(p), None, "--data", "no such file", "check the path")
        for p in data
        if not Path(p).is_file()
    ]
    if not 0 <= tolerance < 1:
        problems.append(
            Problem(
                "command line",
                None,
                "--tolerance",
                f"got {tolerance}",
                "an accuracy drop between 0 and 1, e.g. 0.01",
            )
        )
    if problems:
        raise InputError(problems)
    best = run_dir / rundir.TUNE / "best_config.yaml"
    source = best if best.is_file() else run_dir / rundir.CONFIG
    cfg = load_config(source)
    if cfg.task != "classification":
        raise InputError(
            [
                Problem(
                    str(source),
                    None,
                    "task",
                    "refine handles classifiers so far",
                    "retrain causal LMs with tunewise run",
                )
            ]
        )
    return cfg, str(source.relative_to(run_dir))


def _feedback(run_dir: Path, url: str | None, data: Sequence[str]) -> list[dict]:
    """Every stored feedback row; none (not an error) when only --data rows are given."""

    target = url or run_dir
    if url is None and not (run_dir / rundir.FEEDBACK_DB).is_file() and data:
        return []
    return read_feedback(target)


def _labels(model_dir: Path) -> list[str]:
    config = json.loads((model_dir / "config.json").read_text())
    id2label = config["id2label"]
    return [id2label[str(i)] for i in range(len(id2label))]


def _inputs(url: str, feedback: list[dict], data: Sequence[str]) -> dict:
    from sqlalchemy.engine import make_url

    shown = url if "://" not in url else make_url(url).render_as_string(hide_password=True)
    return {
        "feedback_store": shown,
        "feedback_rows": len(feedback),
        "feedback_last_id": max((int(r["id"]) for r in feedback), default=None),
        "data_files": intake.data_file_hashes(list(data)),
    }


def _intake_summary(rows, rejected, to_train, feedback_test) -> dict:
    return {
        "collected": len(rows) + sum(1 for r in rejected if r.code == "empty-or-garbage"),
        "added_to_train": len(to_train),
        "feedback_test": len(feedback_test),
        "rejected": dict(Counter(r.code for r in rejected)),
    }


def _write_version(
    folder: Path,
    parent: dict,
    train: Examples,
    to_train: list,
    feedback_test: list,
    cols: tuple[str, str],
) -> dict:
    """train.csv = the parent's rows + the new ones; validation stays the parent's."""
    added = intake.rows_to_examples(to_train, "added")
    merged = Examples(
        train.texts + added.texts,
        train.labels + added.labels,
        list(range(2, len(train) + len(added) + 2)),
        "train",
    )
    origin = {"origin": [r.origin for r in to_train]}
    held = intake.rows_to_examples(feedback_test, "feedback_test")
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(parent["data"]["validation"]["path"], folder / "validation.csv")
    return {
        "train": lineage.write_rows(folder / "train.csv", merged, *cols),
        "validation": lineage.file_record(
            folder / "validation.csv", parent["data"]["validation"].get("rows")
        ),
        "added": lineage.write_rows(folder / "added.csv", added, *cols, extra=origin),
        "feedback_test": lineage.write_rows(
            folder / "feedback_test.csv",
            held,
            *cols,
            extra={"origin": [r.origin for r in feedback_test]},
        ),
    }


def _write_rejected(folder: Path, rejected: list) -> None:
    with open(folder / "rejected.jsonl", "w", encoding="utf-8") as f:
        for row in rejected:
            f.write(json.dumps(asdict(row)) + "\n")


def _retrain(cfg, folder: Path, files: dict, labels: list[str]) -> Path:
    """Train the candidate from the pre-trained model on the version's rows (a run directory),
    the way every classifier is trained (`train_classifier`)."""
    raw = cfg.to_dict()
    raw["data"].update(
        train=files["train"]["path"],
        validation=files["validation"]["path"],
        test=files["test"]["path"],
        max_rows=None,
    )
    raw.update(output_dir=str(folder), name="candidate")
    ccfg = load_config(raw)
    cols = (ccfg.data.text_col, ccfg.data.label_col)
    oos_label = ccfg.eval.oos_label()
    train, train_oos = split_out_oos(lineage.read_rows(files["train"], *cols), oos_label)
    validation, _ = split_out_oos(lineage.read_rows(files["validation"], *cols), oos_label)
    splits = Splits(train, validation, None, labels, "file", oos={"train": train_oos})
    run = rundir.start_run(ccfg)
    console.log(f"refine: training the candidate on {len(splits.train)} rows")
    train_classifier(ccfg, splits, run)
    return run


def _refit_detector(cfg, run_dir: Path, files: dict) -> dict | None:
    """The promoted model's out-of-scope detector, fitted on this version's rows (its
    out-of-scope examples included): the old one measured another model's vectors."""
    if cfg.eval.oos is None:
        return None
    version = {k: files[k]["path"] for k in ("train", "validation", "test")}
    data = dataclasses.replace(cfg.data, **version, max_rows=None)
    doc = oos_eval.refit(dataclasses.replace(cfg, data=data), run_dir)
    served = (doc.get("methods") or {}).get(doc.get("method"), {})
    return {k: doc.get(k) for k in ("method", "threshold_from", "rows")} | {
        "threshold": served.get("threshold"),
        "auroc": served.get("auroc"),
    }


def _score(cfg, current: Path, candidate: Path, test: Examples, feedback_test) -> dict:
    """Both models on the same rows; deltas are candidate − current, paired."""

    sets = {"test": (test.texts, test.labels)}
    if feedback_test:
        sets["feedback"] = ([r.text for r in feedback_test], [r.label for r in feedback_test])
    labels = _labels(current)
    out: dict[str, Any] = {}
    for name, (texts, gold) in sets.items():
        y = np.array([labels.index(g) for g in gold])
        cur, cand = predict_ids(current, texts, cfg), predict_ids(candidate, texts, cfg)
        n = len(labels)
        out[name] = {
            "rows": len(y),
            "current": classification_metrics(y, cur, n),
            "candidate": classification_metrics(y, cand, n),
            **compare(y, cur, cand, n, n_boot=cfg.eval.bootstrap or 1000, seed=cfg.seed),
        }
    return out


def predict_ids(model_dir: Path, texts: list[str], cfg) -> np.ndarray:
    """Class ids from a saved classifier (fp32: both models are scored alike)."""
    from transformers import AutoTokenizer

    model = load_trained_classifier(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    encoded = encode(tokenizer, texts, None, cfg.model.max_length)
    return predict_logits(model, encoded, cfg.eval.batch_size)[0].argmax(1)


def gate(metrics: dict, tolerance: float) -> dict:
    """Promote unless a gated metric fell by more than `tolerance` (reasons name each fall)."""
    reasons = []
    for part, metric in GATED:
        if part not in metrics:
            continue
        scores = metrics[part]
        delta = scores["delta"][metric]
        if delta < -tolerance:
            lo, hi = scores["ci95"].get(metric, (float("nan"), float("nan")))
            reasons.append(
                f"{part} {metric} fell {delta:+.4f} (current {scores['current'][metric]:.4f}, "
                f"candidate {scores['candidate'][metric]:.4f}; 95% CI {lo:+.4f}…{hi:+.4f}, "
                f"McNemar p={scores['significance']['p_value']:.3g}) beyond tolerance {tolerance}"
            )
    return {
        "promoted": not reasons,
        "reasons": reasons,
        "tolerance": tolerance,
        "gated": [f"{p}.{m}" for p, m in GATED if p in metrics],
    }


def _promote(run_dir: Path, doc: dict, candidate_model: Path) -> None:
    """Swap RUN_DIR/model for the candidate: copy beside it, then two renames."""
    incoming = run_dir / "model.incoming"
    shutil.rmtree(incoming, ignore_errors=True)
    shutil.copytree(candidate_model, incoming)
    current = lineage.current_version(doc)
    if current["version"] == 0:  # the run's own model has no other copy: archive it
        archive = lineage.version_dir(run_dir, 0) / "model"
        shutil.rmtree(archive, ignore_errors=True)
        os.replace(run_dir / rundir.MODEL, archive)
        current["model"]["path"] = str(archive)
    else:
        shutil.rmtree(run_dir / rundir.MODEL)
    os.replace(incoming, run_dir / rundir.MODEL)


def _print(record: dict) -> None:
    intake_ = record["intake"]
    console.log(
        f"refine v{record['version']}: {intake_['added_to_train']} rows added, "
        f"{intake_['feedback_test']} held out as feedback test, rejected "
        f"{intake_['rejected'] or 'none'}"
    )
    for part, scores in record.get("metrics", {}).items():
        lo, hi = scores["ci95"]["accuracy"]
        console.log(
            f"{part} ({scores['rows']} rows): accuracy {scores['current']['accuracy']:.4f}"
            f" → {scores['candidate']['accuracy']:.4f} (Δ {scores['delta']['accuracy']:+.4f}"
            f", 95% CI {lo:+.4f}…{hi:+.4f}, McNemar p={scores['significance']['p_value']:.3g})"
        )
    decision = record["decision"]
    verdict = "promoted" if decision["promoted"] else "not promoted"
    console.log(
        f"refine v{record['version']}: {verdict}"
        + ("" if decision["promoted"] else ": " + "; ".join(decision["reasons"]))
    )
