"""Task `ranking`: rerankers and reward models trained on preference pairs.

The same path as classification, on pairs: read and check the pairs, score the untuned encoder
(zero-shot: cosine of mean-pooled query and text embeddings), train a single-score head with the
pairwise loss, then compare pairwise accuracy on the same test pairs (paired bootstrap CI,
McNemar). Ties count as wrong.

    tunewise run configs/ranking.yaml      # task: ranking, data: files of query/preferred/rejected
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoTokenizer

from tunewise.config import RunConfig, load_config
from tunewise.core import rundir
from tunewise.core.console import console, results
from tunewise.core.errors import InputError, Problem
from tunewise.core.findings import Finding, write_findings
from tunewise.data.columns import refuse_columns
from tunewise.data.encode import encode
from tunewise.data.split import sample_rows
from tunewise.evaluation.compare import mcnemar_exact, paired_bootstrap
from tunewise.models import load as models
from tunewise.models.adapt import count_parameters, describe_parameters
from tunewise.models.embed import embed
from tunewise.report import html
from tunewise.tasks.ranking.pairs import (
    EncodedPairs,
    Pairs,
    collate_pairs,
    encode_pairs,
    read_pairs,
    score_pairs,
)
from tunewise.training import recipe
from tunewise.training.callbacks import History, ProgressBar
from tunewise.training.loop import fit

NAME = "ranking"
RESUMABLE = False  # `train --resume` is exact for classification only so far
SCORE_LABEL = "score"


def load_pair_splits(cfg: RunConfig) -> dict[str, Pairs | None]:
    """train, validation (the file, or a seeded `val_fraction` of train) and test pairs."""
    d = cfg.data
    if len(d.pair_cols) != 3:
        fix = "list the query, preferred and rejected columns, e.g. [query, preferred, rejected]"
        raise InputError([Problem("config", None, "data.pair_cols", "needs 3 names", fix)])
    rng = np.random.default_rng(cfg.seed)
    read = {
        name: read_pairs(path, d.pair_cols, f"data.{name}") if path else None
        for name, path in (("train", d.train), ("validation", d.validation), ("test", d.test))
    }
    for name, pairs in read.items():
        read[name] = cap(pairs, d.max_rows, cfg.seed) if pairs is not None else None
    train = read["train"]
    assert train is not None
    if read["validation"] is None:
        order = rng.permutation(len(train))
        n_val = max(1, round(d.val_fraction * len(train)))
        read["validation"] = train.subset(sorted(order[:n_val]))
        read["train"] = train.subset(sorted(order[n_val:]))
    return read


def cap(pairs: Pairs, max_rows: int | None, seed: int) -> Pairs:
    """At most `max_rows` pairs, a seeded sample in file order (the same for every caller)."""
    if not max_rows or len(pairs) <= max_rows:
        return pairs
    return pairs.subset(sample_rows(len(pairs), max_rows, seed))


def load_data(cfg: RunConfig) -> dict[str, Pairs | None]:
    return load_pair_splits(cfg)


def audit(cfg: RunConfig, pairs: dict[str, Any], run_dir: Path) -> list[Finding]:
    """Pairs get no data audit yet: an empty audit.json says so to the doctor and the report."""
    write_findings(run_dir / rundir.AUDIT, [])
    return []


def prepare(cfg: RunConfig, pairs: dict[str, Any], run_dir: Path | None) -> tuple[RunConfig, dict]:
    """Pairs are trained on as read (no cleaning step for pairs yet)."""
    return cfg, pairs


def baseline(cfg: RunConfig, pairs: dict[str, Any], run_dir: Path) -> dict | None:
    """The zero-shot baseline on the test pairs (a test file is required to prove the model)."""
    if pairs["test"] is None:
        fix = "give a held-out file of test pairs: the tuned model is proved on it"
        raise InputError([Problem("config", None, "data.test", "no test set given", fix)])
    return ranking_baseline(cfg, pairs["test"], run_dir)


def train(
    cfg: RunConfig, pairs: dict[str, Any], run_dir: Path, resume_from: Path | None = None
) -> dict:
    return train_ranker(cfg, pairs, run_dir)


def write_report(run_dir: str | Path) -> Path:
    return html.write_report(Path(run_dir))


def ranking_baseline(cfg: RunConfig, test: Pairs, run_dir: Path) -> dict | None:
    """Zero-shot: is the preferred text closer (cosine) to the query than the rejected one?"""
    if not any(test.queries):
        return None  # a reward model has no query to compare with: no zero-shot baseline
    tokenizer = models.load_tokenizer(cfg.model.name, cfg.model.trust_remote_code)
    encoder = models.load_encoder(cfg.model.name, cfg.model.trust_remote_code)
    vecs = [
        embed(encoder, encode(tokenizer, texts, None, cfg.model.max_length), cfg.eval.batch_size)
        for texts in (test.queries, test.preferred, test.rejected)
    ]
    correct = (vecs[0] * vecs[1]).sum(1) > (vecs[0] * vecs[2]).sum(1)
    result = {
        "test_size": len(test),
        "test_source": test.source,
        "zero_shot": {"correct": correct.astype(int).tolist(), "metrics": _scores(correct)},
    }
    (run_dir / rundir.BASELINE).write_text(json.dumps(result))
    return result


def _validation_scores(data: EncodedPairs, batch_size: int):
    def evaluate_validation(model) -> dict[str, float]:
        preferred, rejected = score_pairs(model, data, batch_size)
        margin = preferred - rejected
        accuracy = float((margin > 0).mean())
        loss = float(np.logaddexp(0.0, -margin).mean())  # the logistic pairwise loss
        return {"loss": loss, "pairwise_accuracy": accuracy, "accuracy": accuracy}

    return evaluate_validation


def train_ranker(cfg: RunConfig, splits: dict[str, Any], run_dir: Path) -> dict:
    """A single-score model trained on pairs; early stopping on macro_f1 reads accuracy here."""
    tokenizer = models.load_tokenizer(cfg.model.name, cfg.model.trust_remote_code)
    torch.manual_seed(cfg.seed)  # the head's initial weights: same config, same run
    model = recipe.build_model(cfg, [SCORE_LABEL])
    params = count_parameters(model)
    console.log(describe_parameters(params, cfg.adapt.method))
    data = {
        k: encode_pairs(tokenizer, splits[k], cfg.model.max_length) for k in ("train", "validation")
    }
    step_rows = cfg.train.batch_size * cfg.train.grad_accum
    total = cfg.train.max_steps or cfg.train.epochs * -(-len(data["train"]) // step_rows)
    state = fit(
        model,
        data["train"],  # type: ignore[arg-type]  # fit needs len(), lengths() and collate_fn
        _validation_scores(data["validation"], cfg.eval.batch_size),
        _stop_on_accuracy(cfg.train),
        seed=cfg.seed,
        out_dir=run_dir,
        callbacks=[
            History(run_dir / rundir.HISTORY),
            ProgressBar(total, console.is_terminal),
            *recipe.extra_callbacks(cfg),
        ],
        loss_fn=recipe.build_training_loss(cfg),
        collate_fn=collate_pairs,
        layer_lr_decay=cfg.adapt.layer_lr_decay,
    )
    model = recipe.save_trained(model, tokenizer, run_dir)
    summary = {
        "parameters": params,
        "loss": recipe.describe_loss(cfg),
        "regularization": recipe.regularization(cfg, model.config),
        "training": state.summary(),
        "validation": {"size": len(splits["validation"])},
    }
    (run_dir / rundir.TRAINING).write_text(json.dumps(summary, indent=1))
    console.log(f"trained {state.step} steps in {state.seconds:.0f} s")
    return summary


def _stop_on_accuracy(train_cfg: Any) -> Any:
    """Pairs have no macro-F1: early stopping on it watches pairwise accuracy instead."""
    stop = train_cfg.early_stopping
    if stop is None or stop.metric != "macro_f1":
        return train_cfg
    return dataclasses.replace(
        train_cfg, early_stopping=dataclasses.replace(stop, metric="accuracy")
    )


def evaluate(
    run_dir: str | Path,
    data: str | Path | None = None,
    overrides: Sequence[str] = (),
    forgetting: bool = True,
    columns: tuple[str | None, str | None] = (None, None),
) -> dict:
    """Pairwise accuracy of model/ on the test pairs, against the zero-shot baseline (ranking
    runs have no forgetting probe; their columns are data.pair_cols)."""
    run_dir = Path(run_dir)
    refuse_columns(columns, "data.pair_cols=[query,preferred,rejected]")
    cfg = load_config(run_dir / rundir.CONFIG, overrides)
    path = str(data) if data is not None else cfg.data.test
    if path is None:
        fix = "pass --data FILE"
        raise InputError([Problem(str(run_dir / rundir.CONFIG), None, "data.test", "none", fix)])
    test = read_pairs(path, cfg.data.pair_cols, "data.test")
    test = cap(test, cfg.data.max_rows, cfg.seed) if data is None else test
    model = models.load_trained_classifier(run_dir / rundir.MODEL)
    tokenizer = AutoTokenizer.from_pretrained(run_dir / rundir.MODEL)
    preferred, rejected = score_pairs(
        model, encode_pairs(tokenizer, test, cfg.model.max_length), cfg.eval.batch_size
    )
    metrics = _ranking_document(run_dir, cfg, test, (preferred > rejected).astype(int))
    out = run_dir / (rundir.METRICS if data is None else f"metrics-{Path(path).stem}.json")
    out.write_text(json.dumps(metrics, indent=1))
    _write_card(run_dir, cfg, metrics)
    _print_summary(metrics)
    return metrics


def _write_card(run_dir: Path, cfg: RunConfig, metrics: dict) -> None:
    """model/README.md: what the scorer is and how to call it without tunewise."""
    lines = [
        "---\nlibrary_name: transformers\npipeline_tag: text-classification\ntags: [tunewise]\n---",
        f"# {cfg.name}\n",
        f"A pairwise-ranking scorer fine-tuned from `{cfg.model.name}` with tunewise "
        f"(adapt.method = `{cfg.adapt.method}`) on `{cfg.data.train}`. Higher score = preferred.\n",
        "```python\nfrom transformers import pipeline",
        f'score = pipeline("text-classification", model="{run_dir / rundir.MODEL}")',
        'score({"text": query, "text_pair": text}, function_to_apply="none")["score"]\n```\n',
        f"Test pairwise accuracy: {metrics['tuned']['pairwise_accuracy']:.4f} "
        f"({metrics['test_size']} pairs of `{metrics['test_source']}`).",
    ]
    (run_dir / rundir.MODEL / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _scores(correct: np.ndarray) -> dict[str, float]:
    accuracy = float(correct.mean())
    return {"pairwise_accuracy": accuracy, "accuracy": accuracy}


def _ranking_document(run_dir: Path, cfg: RunConfig, test: Pairs, tuned: np.ndarray) -> dict:
    """metrics.json for ranking: `accuracy` mirrors `pairwise_accuracy` for generic readers."""
    doc: dict[str, Any] = {
        "task": NAME,
        "name": cfg.name,
        "test_size": len(test),
        "test_source": test.source,
        "tuned": _scores(tuned),
    }
    saved = run_dir / rundir.BASELINE
    base = json.loads(saved.read_text()) if saved.exists() else None
    if base and base["test_size"] == len(test) and base["test_source"] == test.source:
        zero = np.array(base["zero_shot"]["correct"])
        ones = np.ones_like(tuned)
        doc["baselines"] = {"zero_shot": _scores(zero)}
        doc["baseline_name"], doc["baseline"] = "zero_shot", doc["baselines"]["zero_shot"]
        delta = doc["tuned"]["accuracy"] - doc["baseline"]["accuracy"]
        n_boot = max(cfg.eval.bootstrap, 1)
        ci = paired_bootstrap(ones, zero, tuned, 2, ("accuracy",), n=n_boot, seed=cfg.seed)
        doc["delta"] = {"pairwise_accuracy": delta, "accuracy": delta}
        doc["ci95"] = {k: list(ci["accuracy"]) for k in ("pairwise_accuracy", "accuracy")}
        doc["significance"] = {
            "test": "mcnemar_exact",
            **mcnemar_exact(ones, zero, tuned),
            "bootstrap_resamples": n_boot,
        }
    training = run_dir / rundir.TRAINING
    if training.exists():
        doc.update(json.loads(training.read_text()))
    return doc


def _print_summary(metrics: dict) -> None:
    out = results
    for name, scores in {**metrics.get("baselines", {}), "tuned": metrics["tuned"]}.items():
        out.print(f"{name}: pairwise accuracy {scores['pairwise_accuracy']:.4f}")
    if "delta" in metrics:
        lo, hi = metrics["ci95"]["pairwise_accuracy"]
        out.print(
            f"gain {metrics['delta']['pairwise_accuracy']:+.4f} (95% CI {lo:+.4f} … "
            f"{hi:+.4f}), McNemar p = {metrics['significance']['p_value']:.2g}"
        )
