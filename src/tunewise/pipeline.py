"""The stages behind `tunewise run`: data → baseline → train → evaluate → report.

Each stage is a plain function a Python user can call, and each leaves its output in the run
directory, so a later stage (or a later command) can pick up from there:

    import tunewise
    metrics = tunewise.run("configs/banking77.yaml", ["data.max_rows=300"])
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from tunewise.config import RunConfig, dump_config, load_config
from tunewise.curation import curate, prepare_text
from tunewise.data.encode import Encoded, encode
from tunewise.data.load import Examples, read_examples
from tunewise.data.split import stratified_sample
from tunewise.data.validate import Splits, load_splits
from tunewise.errors import BlockingFinding, InputError, Problem
from tunewise.evaluation import analyses, summary
from tunewise.evaluation import baseline as base
from tunewise.evaluation.metrics import classification_metrics
from tunewise.evaluation.predict import embed, predict_top
from tunewise.evaluation.stream import stream_scores
from tunewise.findings import Finding, has_errors, print_findings, write_findings
from tunewise.models import load as models
from tunewise.models.adapt import count_parameters
from tunewise.models.card import write_model_card
from tunewise.report.doctor import diagnose
from tunewise.report.track import track
from tunewise.training import checkpoint, distributed, packing, recipe
from tunewise.training.callbacks import History, ProgressBar, RowRecorder
from tunewise.training.loop import bf16_supported, fit, resolve_precision

console = Console(stderr=True)


def run(config: str | Path | dict | RunConfig | None = None, overrides: Sequence[str] = ()) -> dict:
    """Validate data, score the baselines, train, evaluate against them, write the report."""
    cfg = _config(config, overrides)
    if cfg.task == "causal_lm":  # chat / instruction SFT of a decoder (tunewise/llm/)
        from tunewise.llm.stage import run_causal_lm

        return run_causal_lm(cfg)
    if cfg.train.loss == "pairwise_ranking":  # preference pairs: a reranker or reward model
        from tunewise.ranking.stage import run_ranking

        return run_ranking(cfg)
    splits = load_splits(cfg.data, cfg.seed)
    if splits.test is None:
        raise InputError(
            [
                Problem(
                    "config",
                    None,
                    "data.test",
                    "no test set given",
                    "give a held-out test file: the tuned model is proved on it",
                )
            ]
        )
    run_dir = start_run(cfg)
    splits = curate(cfg, splits, run_dir)
    tokenizer = models.load_tokenizer(cfg.model.name, cfg.model.trust_remote_code)
    baseline(cfg, splits, run_dir, tokenizer)
    train_stage(cfg, splits, run_dir, tokenizer)
    metrics = evaluate(run_dir)
    findings = doctor(run_dir)
    report(run_dir)
    logged = track(run_dir, cfg.track.backends, cfg.track.uri, cfg.track.experiment)
    if logged:
        console.log("tracked: " + ", ".join(f"{k} run {v}" for k, v in logged.items()))
    if has_errors(findings):
        raise BlockingFinding(f"the doctor found errors; see {run_dir / 'doctor.json'}")
    return metrics


def train(
    config: str | Path | dict | RunConfig | None = None,
    overrides: Sequence[str] = (),
    resume: str | Path | None = None,
) -> Path:
    """Validate data and train; the run directory gets model/, history.jsonl and checkpoints/.

    `resume` (a run directory, or "auto" for this config's) continues from its newest valid
    checkpoint, exactly as if training had never stopped.
    """
    cfg = _config(config, overrides)
    if resume is not None and (cfg.task == "causal_lm" or cfg.train.loss == "pairwise_ranking"):
        fix = "start the run again without --resume (exact resume covers classification so far)"
        raise InputError([Problem("command line", None, "--resume", "not supported here", fix)])
    cfg, resume_from = checkpoint.resume_point(cfg, resume)
    if cfg.task == "causal_lm":
        from tunewise.llm.stage import train_only

        return train_only(cfg)
    if cfg.train.loss == "pairwise_ranking":
        from tunewise.ranking.stage import train_ranking

        return train_ranking(cfg)
    splits = load_splits(cfg.data, cfg.seed)
    fresh = distributed.is_main() and resume_from is None  # one writer under DDP
    run_dir = start_run(cfg) if fresh else cfg.run_dir()
    tokenizer = models.load_tokenizer(cfg.model.name, cfg.model.trust_remote_code)
    train_stage(cfg, splits, run_dir, tokenizer, resume_from)
    return run_dir


def _config(config, overrides: Sequence[str]) -> RunConfig:
    if isinstance(config, RunConfig):
        return load_config(config.to_dict(), overrides) if overrides else config
    return load_config(config, overrides)


def start_run(cfg: RunConfig) -> Path:
    """Create the run directory with the resolved config; clear outputs of an earlier run."""
    run_dir = cfg.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("history.jsonl", "metrics.json", "baseline.json", "training.json",
                  "rows.jsonl", "nonfinite.json"):  # fmt: skip
        (run_dir / stale).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # never resume an older run
    dump_config(cfg, run_dir / "config.yaml")
    console.log(f"run directory: {run_dir}")
    return run_dir


def _encode(tokenizer, ex: Examples, splits: Splits, max_length: int) -> Encoded:
    return encode(tokenizer, ex.texts, splits.ids(ex), max_length)


def baseline(cfg: RunConfig, splits: Splits, run_dir: Path, tokenizer) -> dict:
    """Score zero-shot and linear-probe baselines of the untuned encoder on the test rows."""
    assert splits.test is not None
    console.log("baseline: embedding train, validation and test with the untuned encoder")
    m = cfg.model
    encoder = models.load_encoder(m.name, m.trust_remote_code, m.allow_unsafe_weights)
    bf16 = resolve_precision(cfg.train.precision, next(encoder.parameters()).device) == "bf16"
    n = len(splits.labels)
    emb = {
        name: embed(
            encoder, _encode(tokenizer, ex, splits, cfg.model.max_length), cfg.eval.batch_size, bf16
        )
        for name, ex in (
            ("train", splits.train),
            ("validation", splits.validation),
            ("test", splits.test),
        )
    }
    label_ex = encode(
        tokenizer, [base.label_text(x) for x in splits.labels], None, cfg.model.max_length
    )
    y = {
        name: np.array(splits.ids(ex))
        for name, ex in (
            ("train", splits.train),
            ("validation", splits.validation),
            ("test", splits.test),
        )
    }
    zero = base.zero_shot(emb["test"], embed(encoder, label_ex, cfg.eval.batch_size, bf16))
    probe, c = base.linear_probe(
        emb["train"], y["train"], emb["validation"], y["validation"], emb["test"], cfg.seed
    )
    result: dict[str, Any] = {
        "test_size": len(splits.test),
        "test_source": splits.test.source,
        "zero_shot": {
            "predictions": zero.tolist(),
            "metrics": classification_metrics(y["test"], zero, n),
        },
        "linear_probe": {
            "predictions": probe.tolist(),
            "C": c,
            "metrics": classification_metrics(y["test"], probe, n),
        },
    }
    (run_dir / "baseline.json").write_text(json.dumps(result))
    for name in ("zero_shot", "linear_probe"):
        console.log(f"baseline {name}: accuracy {result[name]['metrics']['accuracy']:.4f}")
    return result


def train_stage(
    cfg: RunConfig, splits: Splits, run_dir: Path, tokenizer, resume_from: Path | None = None
) -> dict:
    """Adapt the pre-trained model, train it (from checkpoint `resume_from`), save model/ and
    training.json."""
    torch.manual_seed(cfg.seed)  # the new head's initial weights too: same config, same run
    model = recipe.build_model(cfg, splits.labels)
    params = count_parameters(model)
    console.log(
        f"trainable parameters: {params['trainable']:,} of {params['total']:,} "
        f"({params['percent']:.2f}%)  method={cfg.adapt.method}"
    )
    train_data = _encode(tokenizer, splits.train, splits, cfg.model.max_length)
    val_data = _encode(tokenizer, splits.validation, splits, cfg.model.max_length)
    bf16 = resolve_precision(cfg.train.precision, next(model.parameters()).device) == "bf16"

    def evaluate_validation(m) -> dict[str, float]:  # streamed: memory flat in validation size
        return stream_scores(m, val_data, len(splits.labels), cfg.eval.batch_size, bf16)

    head_init = recipe.init_head(cfg, model, train_data) if resume_from is None else None
    start = recipe.start_weights(cfg, model, splits.labels, train_data, resume_from is not None)
    averager = recipe.checkpoint_average(cfg)
    main = distributed.is_main()  # under DDP only the main process logs and saves
    bar = ProgressBar(_total_steps(cfg, len(train_data)), enabled=console.is_terminal and main)
    writers = [History(run_dir / "history.jsonl"), bar] if main else []
    if main and cfg.train.record_rows:
        writers.append(RowRecorder(run_dir / "rows.jsonl"))
    counts = np.bincount(train_data.labels, minlength=len(splits.labels)).tolist()
    model, collate_fn, train_cfg = packing.prepare(model, cfg.train)  # short rows share a row
    state = fit(
        model,
        train_data,
        averager.wrap(evaluate_validation) if averager else evaluate_validation,
        train_cfg,
        seed=cfg.seed,
        out_dir=run_dir,
        resume_from=resume_from,
        run_hash=checkpoint.config_hash(cfg),
        callbacks=[*writers, *recipe.extra_callbacks(cfg)],
        loss_fn=recipe.build_training_loss(cfg, counts),
        layer_lr_decay=cfg.adapt.layer_lr_decay,
        collate_fn=collate_fn,
    )
    averaging = recipe.finish_average(cfg, averager, model, evaluate_validation, state)
    interpolation = recipe.finish_interpolation(cfg, start, model, evaluate_validation)
    if not main:
        return {}
    model = recipe.save_trained(model, tokenizer, run_dir)
    summary: dict[str, Any] = {
        "parameters": params,
        "loss": recipe.describe_loss(cfg),
        "regularization": recipe.regularization(cfg, model.config),
        "training": {
            "steps": state.step,
            "epochs": state.epoch,
            "seconds": round(state.seconds, 2),
            "samples_per_second": round(state.samples / max(state.seconds, 1e-9), 2),
            "best_step": state.best_step,
            "best_metric": state.best_metric,
            "stopped_early": state.stopped_early,
            "precision": state.precision,
        },
        "validation": {"source": splits.validation_source, "size": len(splits.validation)},
        "head_init": head_init,
        "averaging": averaging,
        "interpolation": interpolation,
        "train_label_counts": dict(Counter(splits.train.labels)),
    }
    (run_dir / "training.json").write_text(json.dumps(summary, indent=1))
    console.log(
        f"trained {state.step} steps in {state.seconds:.0f} s "
        f"({summary['training']['samples_per_second']:.0f} samples/s, {state.precision})"
    )
    return summary


def _total_steps(cfg: RunConfig, n_rows: int) -> int:
    step_rows = cfg.train.batch_size * cfg.train.grad_accum
    return cfg.train.max_steps or cfg.train.epochs * -(-n_rows // step_rows)


def evaluate(run_dir: str | Path, data: str | Path | None = None) -> dict:
    """Score the tuned model on the test set (or `data`) and compare it with the baseline."""
    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.yaml")
    if cfg.task == "causal_lm":
        from tunewise.llm.evaluate import evaluate_sft

        return evaluate_sft(run_dir, data=data)
    if cfg.train.loss == "pairwise_ranking":
        from tunewise.ranking.stage import evaluate_ranker

        return evaluate_ranker(run_dir, data)
    path = str(data) if data is not None else cfg.data.test
    if path is None:
        raise InputError(
            [
                Problem(
                    str(run_dir / "config.yaml"),
                    None,
                    "data.test",
                    "no test set to evaluate on",
                    "pass --data FILE",
                )
            ]
        )
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(
        run_dir / "model", use_safetensors=True
    )
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "model")
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    test = prepare_text(cfg, _read_labelled(path, cfg, labels))  # as the model was trained
    if data is None and cfg.data.max_rows is not None:  # the seeded sample the baseline scored
        test = stratified_sample(test, cfg.data.max_rows, cfg.seed)
    y = np.array([labels.index(t) for t in test.labels])
    bf16 = bf16_supported(next(model.parameters()).device) and cfg.train.precision != "fp32"
    fitted = analyses.validation_temperature(cfg, model, tokenizer, labels, bf16)
    top = predict_top(  # a few numbers a row: memory does not grow by a row of logits
        model,
        tokenizer,
        test.texts,
        cfg.model.max_length,
        cfg.eval.batch_size,
        bf16,
        analyses.temperature_of(fitted),
    )
    metrics = summary.metrics_document(run_dir, cfg, labels, y, top.pred, test)
    scored = analyses.Scored(test, y, top, labels, analyses.text_tokens(tokenizer, top.lengths))
    metrics["slices"] = analyses.slices(cfg.eval, scored)
    metrics["calibration"] = analyses.calibration(scored, fitted)
    metrics["errors"] = analyses.errors(scored)
    metrics["forgetting"] = analyses.forgetting(cfg, model.base_model, tokenizer, bf16)
    out = run_dir / ("metrics.json" if data is None else f"metrics-{Path(path).stem}.json")
    out.write_text(json.dumps(metrics, indent=1))
    write_model_card(run_dir, metrics)
    summary.print_summary(metrics, run_dir)
    return metrics


def _read_labelled(path: str, cfg: RunConfig, labels: list[str]) -> Examples:
    ex, problems = read_examples(
        path, cfg.data.text_col, cfg.data.label_col, field="data.test", keep=cfg.eval.slice_cols
    )
    known = set(labels)
    problems += [
        Problem(
            path,
            line,
            cfg.data.label_col,
            f"label '{lab}' was not in training",
            "remove the row or retrain with examples of this label",
        )
        for line, lab in zip(ex.lines, ex.labels, strict=True)
        if lab not in known
    ]
    if problems:
        raise InputError(problems)
    return ex


def doctor(run_dir: str | Path) -> list[Finding]:
    """Diagnose a finished run: write doctor.json and print the findings."""
    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.yaml")
    findings = diagnose(run_dir, cfg.doctor)
    write_findings(run_dir / "doctor.json", findings)
    print_findings(findings, f"doctor: {run_dir}")
    return findings


def report(run_dir: str | Path) -> Path:
    """Write the self-contained HTML report of a run directory."""
    from tunewise.report.html import write_report

    if load_config(Path(run_dir) / "config.yaml").task == "causal_lm":
        from tunewise.llm.report import write_sft_report

        path = write_sft_report(Path(run_dir))
        console.log(f"report written: {path}")
        return path
    path = write_report(Path(run_dir))
    console.log(f"report written: {path}")
    return path
