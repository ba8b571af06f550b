"""Out-of-scope detection on BANKING77-OOS: every method, in-domain and out-of-domain, per seed.

The default recipe (configs/banking77.yaml's, data swapped) trains on the 50 in-scope intents
with `valid.csv` for validation; its test file is `test.csv` plus the in-domain out-of-scope
test queries (`id_oos_test.csv`), so metrics.json also holds the linear probe's figures. Then,
from the run's model, on the same rows:

- every method's AUROC and FPR@95, in-domain (`id_oos_test.csv`, 27 held-back intents) and
  out-of-domain (`ood_oos_valid.csv`: the mirror has no out-of-domain test split; nothing is
  chosen on it), with no out-of-scope rows used (threshold at `eval.oos.coverage`);
- the default method at several coverages: in-scope accuracy with abstention counted as wrong
  against the plain accuracy, and out-of-scope recall;
- the same with `id_oos_train.csv` given as out-of-scope examples (threshold by Youden's J);
- the serve cost of the score: `TorchClassifier.predict` at batch 1 with the detector and
  without, interleaved (p50 of each).

    python bench/oos_banking77.py --seeds 13,14,15
    python bench/oos_banking77.py --quick          # one seed, one epoch

Runs go under `--out` and are reused when their metrics.json exists (`--fresh` retrains), so a
second invocation re-measures scores and latency on an idle machine in minutes. Heavy: run it
under `flock /tmp/tunewise-heavy.lock` on a shared machine. The last line is one JSON object,
also written to bench/results/oos_banking77.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "banking77_oos"
CONFIG = ROOT / "configs" / "banking77.yaml"
COVERAGES = (0.9, 0.95, 0.97, 0.98, 0.99)


def rows(name: str) -> list[dict[str, str]]:
    with open(DATA / name, encoding="utf-8", newline="") as f:
        return [{"text": r["text"], "category": r["category"]} for r in csv.DictReader(f)]


def write_test(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["text", "category"])
        w.writeheader()
        w.writerows(rows("test.csv") + rows("id_oos_test.csv"))
    return path


def train(seed: int, args) -> Path:
    import tunewise

    name = f"oos-s{seed}"
    run_dir = args.out / "runs" / name
    if args.fresh or not (run_dir / "metrics.json").exists():
        overrides = [
            f"name={name}",
            f"output_dir={args.out / 'runs'}",
            f"seed={seed}",
            f"data.train={DATA / 'train.csv'}",
            f"data.validation={DATA / 'valid.csv'}",
            f"data.test={write_test(args.out / 'test_with_id_oos.csv')}",
            "eval.forgetting=[]",
            "track.backends=[]",
            *(["train.epochs=1"] if args.quick else []),
        ]
        tunewise.run(str(CONFIG), overrides)
    return run_dir


def measure(run_dir: Path) -> dict:
    """Scores of every method on the run's model, and the default method's thresholds."""
    from transformers import AutoTokenizer

    from tunewise import pipeline
    from tunewise.core.device import uses_bf16
    from tunewise.data.encode import encode
    from tunewise.evaluation import analyses, oos
    from tunewise.models.features import logits_and_features
    from tunewise.models.load import load_trained_classifier

    cfg = pipeline._config_of(run_dir)
    model = load_trained_classifier(run_dir / "model")
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "model")
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    bf16 = uses_bf16(cfg.train.precision, model)
    temperature = analyses.temperature_of(
        analyses.validation_temperature(cfg, model, tokenizer, labels, bf16)
    )

    def outputs(name: str) -> tuple[oos.Outputs, np.ndarray]:
        r = rows(name)
        data = encode(tokenizer, [x["text"] for x in r], None, cfg.model.max_length)
        out = oos.Outputs(*logits_and_features(model, data, cfg.eval.batch_size, bf16))
        index = {label: i for i, label in enumerate(labels)}
        return out, np.array([index.get(x["category"], -1) for x in r])

    (tr, tr_y), (va, _), (te, te_y) = (outputs(f"{s}.csv") for s in ("train", "valid", "test"))
    oos_sets = {s: outputs(f"{s}.csv")[0] for s in ("id_oos_test", "ood_oos_valid", "id_oos_train")}
    o, k = cfg.eval.oos, cfg.eval.oos.k
    common = dict(k=k, temperature=temperature or 1.0)

    def compare(test_oos: str, coverage: float, examples: str | None = None) -> dict:
        reports, _ = oos.compare_methods(
            tr, tr_y, va, oos_sets[examples] if examples else None, te, te_y,
            oos_sets[test_oos], coverage=coverage, **common,
        )  # fmt: skip
        return {m: {x: v for x, v in r.items() if x != "histogram"} for m, r in reports.items()}

    sweep = {}
    for c in COVERAGES:
        det = oos.fit_detector(o.method, tr, tr_y, va, None, c, **common)
        correct = te.logits.argmax(1) == te_y
        sweep[str(c)] = {
            part: oos.oos_report(det.of(te), det.of(oos_sets[part]), det.threshold, correct)
            for part in ("id_oos_test", "ood_oos_valid")
        }
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "method": o.method,
        "coverage": o.coverage,
        "temperature": temperature,
        "accuracy": float(np.mean(te.logits.argmax(1) == te_y)),
        "probe_accuracy": metrics["baselines"]["linear_probe"]["accuracy"],
        "in_domain": compare("id_oos_test", o.coverage),
        "out_of_domain": compare("ood_oos_valid", o.coverage),
        "coverage_sweep": sweep,
        "with_examples": {
            "in_domain": compare("id_oos_test", o.coverage, "id_oos_train"),
            "out_of_domain": compare("ood_oos_valid", o.coverage, "id_oos_train"),
        },
        "probe_in_domain": {
            m: {x: v for x, v in r.items() if x != "histogram"}
            for m, r in metrics["oos"]["baseline"]["methods"].items()
        },
        "train_seconds": json.loads((run_dir / "training.json").read_text())["training"]["seconds"],
    }


def latency(run_dir: Path, reps: int) -> dict:
    """/predict's model call at batch 1 with the detector and without, interleaved."""
    from tunewise.serving.predictor import TorchClassifier, run_task

    clf = TorchClassifier(run_dir, run_task(run_dir)[1])
    det = clf.detector
    texts = [r["text"] for r in rows("test.csv")[:50]]
    times: dict[str, list[float]] = {"with": [], "without": []}
    for i in range(reps):
        for key in ("with", "without") if i % 2 else ("without", "with"):
            clf.detector = det if key == "with" else None
            t = time.perf_counter()
            clf.predict([texts[i % len(texts)]])
            times[key].append(time.perf_counter() - t)
    p50 = {key: statistics.median(v[10:]) * 1000 for key, v in times.items()}
    return {"p50_ms_with": p50["with"], "p50_ms_without": p50["without"],
            "cost": p50["with"] / p50["without"] - 1, "reps": reps}  # fmt: skip


def summary(per_seed: dict[str, dict]) -> dict:
    """Mean ± sd over seeds of the figures the issue asks for."""

    def stat(get) -> dict:
        values = [get(r) for r in per_seed.values()]
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return {"mean": round(statistics.mean(values), 4), "sd": round(sd, 4)}

    first = next(iter(per_seed.values()))
    out: dict = {"accuracy": stat(lambda r: r["accuracy"])}
    for part in ("in_domain", "out_of_domain"):
        for m in first[part]:
            for key in ("auroc", "fpr_at_95_recall"):
                out[f"{part}.{m}.{key}"] = stat(lambda r, p=part, m=m, k=key: r[p][m][k])
    m = first["method"]
    for c in COVERAGES:
        get = lambda r, c=c: r["coverage_sweep"][str(c)]["id_oos_test"]  # noqa: E731
        out[f"coverage {c}: accuracy drop"] = stat(
            lambda r, g=get: r["accuracy"] - g(r)["in_scope_accuracy_with_abstention"]
        )
        out[f"coverage {c}: in-domain recall"] = stat(lambda r, g=get: g(r)["oos_recall"])
        out[f"coverage {c}: out-of-domain recall"] = stat(
            lambda r, c=c: r["coverage_sweep"][str(c)]["ood_oos_valid"]["oos_recall"]
        )
    for part in ("in_domain", "out_of_domain"):
        out[f"examples: {part} recall"] = stat(
            lambda r, p=part: r["with_examples"][p][m]["oos_recall"]
        )
    out["examples: accuracy with abstention"] = stat(
        lambda r: r["with_examples"]["in_domain"][m]["in_scope_accuracy_with_abstention"]
    )
    if all("latency" in r for r in per_seed.values()):
        out["serve cost at batch 1"] = stat(lambda r: r["latency"]["cost"])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="13,14,15")
    p.add_argument("--quick", action="store_true", help="one seed, one epoch")
    p.add_argument("--fresh", action="store_true", help="retrain even when a run exists")
    p.add_argument("--latency-reps", type=int, default=400, help="0 skips the latency measure")
    p.add_argument("--out", type=Path, default=Path("/tmp/tunewise-oos"))
    args = p.parse_args()
    if args.quick:
        args.seeds, args.out = "13", args.out / "quick"
    per_seed = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        run_dir = train(seed, args)
        per_seed[str(seed)] = measure(run_dir)
        if args.latency_reps:
            per_seed[str(seed)]["latency"] = latency(run_dir, args.latency_reps)
    result = {"bench": "oos_banking77", "quick": args.quick, "seeds": per_seed,
              "summary": summary(per_seed)}  # fmt: skip
    out = (
        ROOT
        / "bench"
        / "results"
        / ("oos_banking77_quick.json" if args.quick else "oos_banking77.json")
    )
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
