"""The refinement loop on BANKING77, scripted: serve → feedback → select → refine → promote?

    flock /tmp/tunewise-heavy.lock .venv/bin/python bench/feedback_loop.py [--quick]

A model is trained on a subset of intents in which five intents are cut to 5 examples each.
Simulated testers send held-out queries, see the model's prediction and answer correct, or
incorrect with the true intent (feedback rows go through the real store). `select` then picks the
most uncertain, mutually distinct remaining pool queries and simulated experts label them.
`refine` audits all of it, retrains, compares on the frozen test set and the held-out feedback,
and decides. Reported: accuracy on the five cut intents before vs after (paired bootstrap CI),
overall test accuracy before vs after (CI, McNemar), the decision, and an ONNX export check of
the final model (fp32/int8 agreement with PyTorch, batch-1 latency). `--quick`: 10 intents.
Prints one JSON object as its last line and writes bench/results/feedback_loop.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from tunewise.data.load import read_examples
from tunewise.evaluation.compare import compare
from tunewise.feedback.refine import predict_ids, refine
from tunewise.feedback.select import select
from tunewise.feedback.store import open_store
from tunewise.pipeline import train

ROOT = Path(__file__).resolve().parents[1]
BANKING = ROOT.parent / "shared" / "data" / "banking77"
SIZES = {  # intents, training rows per intact intent, pool rows per intent, feedback, select
    "quick": {"intents": 10, "per_intent": 40, "pool": 30, "feedback": 120, "select": 40},
    "full": {"intents": 20, "per_intent": 60, "pool": 40, "feedback": 300, "select": 80},
}
CUT, CUT_TO, SEED = 5, 5, 13


def write(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "category"])
        writer.writerows(rows)
    return path


def make_data(work: Path, size: dict) -> dict:
    """Train (five intents cut to 5), an unlabelled pool, and the test rows of the intents."""
    train, _ = read_examples(BANKING / "train.csv", "text", "category")
    test, _ = read_examples(BANKING / "test.csv", "text", "category")
    rng = np.random.default_rng(SEED)
    intents = sorted(rng.choice(sorted(set(train.labels)), size["intents"], replace=False))
    cut = sorted(rng.choice(intents, CUT, replace=False))
    rows, pool = [], []
    for intent in intents:
        texts = [t for t, lab in zip(train.texts, train.labels, strict=True) if lab == intent]
        texts = [texts[i] for i in rng.permutation(len(texts))]
        keep = CUT_TO if intent in cut else size["per_intent"]
        rows += [(t, intent) for t in texts[:keep]]
        pool += [(t, intent) for t in texts[keep : keep + size["pool"]]]
    pool = [pool[i] for i in rng.permutation(len(pool))]
    held = [(t, lab) for t, lab in zip(test.texts, test.labels, strict=True) if lab in intents]
    return {
        "intents": [str(i) for i in intents],
        "cut": [str(i) for i in cut],
        "train": write(work / "train.csv", rows),
        "test": write(work / "test.csv", held),
        "pool": pool,
    }


def config(work: Path, data: dict) -> dict:
    return {
        "name": "loop",
        "output_dir": str(work / "runs"),
        "seed": SEED,
        "data": {
            "train": str(data["train"]),
            "test": str(data["test"]),
            "text_col": "text",
            "label_col": "category",
        },
        "model": {"name": "minilm-l6", "max_length": 64},
        "train": {"epochs": 8, "batch_size": 16, "lr": 3e-4, "log_every": 20},
        "eval": {"forgetting": []},
        "audit": {"label_noise": False},
        "track": {"backends": []},
    }


def testers(run_dir: Path, queries: list[tuple[str, str]], cfg) -> dict:
    """Each query: the served model's prediction, then a verdict (correct, or the true intent)."""
    labels = json.loads((run_dir / "model" / "config.json").read_text())["id2label"]
    pred = [labels[str(i)] for i in predict_ids(run_dir / "model", [q for q, _ in queries], cfg)]
    store = open_store(None, run_dir)
    for i, ((text, truth), guess) in enumerate(zip(queries, pred, strict=True)):
        body = {
            "text": text,
            "prediction": guess,
            "user": f"tester{i % 4}",
            "verdict": "correct" if guess == truth else "incorrect",
        }
        if guess != truth:
            body["correction"] = truth
        store.add(f"bench-{i}", body)
    counts = store.count()
    store.close()
    return counts


def experts(selected: Path, truth: dict[str, str]) -> tuple[Path, dict]:
    """Fill the label column of select's CSV with the true intent (simulated experts)."""
    with open(selected, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["category"] = truth[row["text"]]
    out = selected.with_name("labelled.csv")
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    wrong = sum(r["predicted"] != r["category"] for r in rows)
    return out, {"selected": len(rows), "model_wrong_on_selected": wrong}


def random_picks(run_dir: Path, rest: list[tuple[str, str]], n: int, data: dict, cfg) -> dict:
    """The ablation: the same refinement with `n` random pool rows labelled instead of select's."""
    rng = np.random.default_rng(SEED)
    picks = [rest[i] for i in rng.choice(len(rest), n, replace=False)]
    labelled = write(run_dir.parent / "random_labelled.csv", picks)
    before = run_dir / "model_before"
    shutil.copytree(run_dir / "model", before)
    record = refine(run_dir, data=[str(labelled)], tolerance=0.01)
    after = run_dir / "versions" / f"v{record['version']}" / "candidate" / "model"
    return {
        "random_cut_intents_after": cut_intent_scores(run_dir, before, after, data, cfg)["after"],
        "random_overall_after": record["metrics"]["test"]["candidate"]["accuracy"],
        "random_picks_model_wrong": sum(
            1
            for (t, lab), p in zip(
                picks, _predicted(before, [t for t, _ in picks], cfg), strict=True
            )
            if p != lab
        ),
    }


def _predicted(model_dir: Path, texts: list[str], cfg) -> list[str]:
    labels = json.loads((model_dir / "config.json").read_text())["id2label"]
    return [labels[str(i)] for i in predict_ids(model_dir, texts, cfg)]


def cut_intent_scores(run_dir: Path, before: Path, after: Path, data: dict, cfg) -> dict:
    """Accuracy on the test rows of the five cut intents, before vs after, paired."""
    test, _ = read_examples(data["test"], "text", "category")
    idx = [i for i, lab in enumerate(test.labels) if lab in data["cut"]]
    texts = [test.texts[i] for i in idx]
    labels = json.loads((after / "config.json").read_text())["id2label"]
    names = [labels[str(i)] for i in range(len(labels))]
    y = np.array([names.index(test.labels[i]) for i in idx])
    a, b = predict_ids(before, texts, cfg), predict_ids(after, texts, cfg)
    result = compare(y, a, b, len(names), n_boot=1000, seed=SEED)
    return {
        "rows": len(y),
        "before": float(np.mean(a == y)),
        "after": float(np.mean(b == y)),
        "delta": result["delta"]["accuracy"],
        "ci95": result["ci95"]["accuracy"],
        "mcnemar_p": result["significance"]["p_value"],
    }


def onnx_check(run_dir: Path, data: dict, cfg) -> dict:
    """Export the final model; agreement with PyTorch on the test set and batch-1 latency."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tunewise.serving.export import export
    from tunewise.serving.onnx_backend import OnnxPredictor

    export(run_dir, "onnx", "int8")
    test, _ = read_examples(data["test"], "text", "category")
    texts = test.texts[:: max(1, len(test) // 200)][:200]
    model = AutoModelForSequenceClassification.from_pretrained(run_dir / "model").eval()
    tok = AutoTokenizer.from_pretrained(run_dir / "model")
    ref = predict_ids(run_dir / "model", test.texts, cfg)

    def torch_one(text):
        batch = tok([text], truncation=True, max_length=64, return_tensors="pt")
        with torch.inference_mode():
            return model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).logits

    out = {"texts_timed": len(texts), "torch_p50_ms": _p50(torch_one, texts)}
    for variant in ("model.onnx", "model.int8.onnx"):
        predictor = OnnxPredictor(run_dir, variant)
        got = predictor.probabilities(test.texts).argmax(1)
        truth = np.array([predictor.labels.index(t) for t in test.labels])
        out[variant] = {
            "top1_agreement_with_torch": float(np.mean(got == ref)),
            "accuracy": float(np.mean(got == truth)),
            "p50_ms": _p50(lambda t, p=predictor: p.predict([t]), texts),
            "mb": round((run_dir / "onnx" / variant).stat().st_size / 1e6, 1),
        }
    out["torch_accuracy"] = float(np.mean(ref == truth))
    return out


def _p50(fn, texts) -> float:
    for t in texts[:10]:
        fn(t)
    times = []
    for t in texts:
        start = time.perf_counter()
        fn(t)
        times.append((time.perf_counter() - start) * 1000)
    return round(float(np.percentile(times, 50)), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 intents instead of 20")
    parser.add_argument("--work", default=str(ROOT / "runs" / "bench_feedback_loop"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    size = SIZES["quick" if args.quick else "full"]
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.perf_counter()
    data = make_data(work, size)
    run_dir = train(config(work, data))
    from tunewise.config import load_config

    cfg = load_config(run_dir / "config.yaml")
    trained = time.perf_counter()
    pool = data["pool"]
    sent, rest = pool[: size["feedback"]], pool[size["feedback"] :]
    feedback = testers(run_dir, sent, cfg)
    write(work / "unlabelled.csv", [(t, "") for t, _ in rest])
    chosen = select(run_dir, work / "unlabelled.csv", size["select"], work / "to_label.csv")
    labelled, picked = experts(chosen, dict(rest))
    before = work / "model_before"
    shutil.copytree(run_dir / "model", before)
    random_run = Path(shutil.copytree(run_dir, work / "random_picks"))  # same run, same feedback
    record = refine(run_dir, data=[str(labelled)], tolerance=0.01)
    after = (
        run_dir / "model"
        if record["decision"]["promoted"]
        else run_dir / "versions" / (f"v{record['version']}") / "candidate" / "model"
    )
    test = record["metrics"]["test"]
    result = {
        "benchmark": "feedback_loop",
        "quick": args.quick,
        "intents": len(data["intents"]),
        "cut_intents": data["cut"],
        "train_rows": len(read_examples(data["train"], "text", "category")[0]),
        "test_rows": test["rows"],
        "feedback": feedback,
        "select": picked,
        "intake": record["intake"],
        "cut_intents_test": cut_intent_scores(run_dir, before, after, data, cfg),
        "overall_test": {
            "before": test["current"]["accuracy"],
            "after": test["candidate"]["accuracy"],
            "delta": test["delta"]["accuracy"],
            "ci95": test["ci95"]["accuracy"],
            "mcnemar_p": test["significance"]["p_value"],
            "macro_f1_before": test["current"]["macro_f1"],
            "macro_f1_after": test["candidate"]["macro_f1"],
        },
        "feedback_test": {k: record["metrics"]["feedback"][k] for k in ("rows", "delta", "ci95")}
        if "feedback" in record["metrics"]
        else None,
        "decision": record["decision"],
        "seconds": {"first_training": round(trained - started, 1)},
    }
    result["select_vs_random"] = random_picks(random_run, rest, size["select"], data, cfg)
    result["select_vs_random"]["select_cut_intents_after"] = result["cut_intents_test"]["after"]
    result["select_vs_random"]["select_overall_after"] = test["candidate"]["accuracy"]
    result["onnx"] = onnx_check(run_dir, data, cfg)
    result["seconds"]["total"] = round(time.perf_counter() - started, 1)
    result["torch_threads"] = torch.get_num_threads()
    out = ROOT / "bench" / "results" / "feedback_loop.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
