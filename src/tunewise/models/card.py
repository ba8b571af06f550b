"""The model card (`model/README.md`): what the model is, what it was trained on, how it scored."""

from __future__ import annotations

from pathlib import Path

import yaml

from tunewise.core import rundir


def write_model_card(run_dir: Path, metrics: dict) -> Path:
    """Write model/README.md from the run's config and metrics."""
    cfg = yaml.safe_load((run_dir / rundir.CONFIG).read_text())
    tuned = metrics["tuned"]
    max_length = (cfg.get("model") or {}).get("max_length", 512)
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-classification",
        "tags: [tunewise]",
        "---",
        "",
        f"# {cfg['name']}",
        "",
        f"Fine-tuned from `{cfg['model']['name']}` with tunewise (adapt.method = "
        f"`{cfg['adapt']['method']}`) on `{cfg['data']['train']}`.",
        "",
        "Needs only `transformers` (and torch), no tunewise:",
        "",
        "```python",
        "from transformers import pipeline",
        f'clf = pipeline("text-classification", model="{run_dir / rundir.MODEL}")',
        f'clf("my card is lost", truncation=True, max_length={max_length})'
        "  # as trained: the first max_length tokens",
        "```",
        "",
        f"## Test results ({metrics['test_size']} rows of `{metrics.get('test_source', '?')}`)",
        "",
        "| model | accuracy | macro-F1 |",
        "|---|---|---|",
    ]
    for name, scores in {**metrics.get("baselines", {}), "tuned": tuned}.items():
        lines.append(f"| {name} | {scores['accuracy']:.4f} | {scores['macro_f1']:.4f} |")
    if "ci95" in metrics:
        lo, hi = metrics["ci95"]["accuracy"]
        lines += [
            "",
            f"Accuracy gain over `{metrics['baseline_name']}`: "
            f"{metrics['delta']['accuracy']:+.4f} (95% CI {lo:+.4f} to {hi:+.4f}, "
            f"McNemar p = {metrics['significance']['p_value']:.2g}).",
        ]
    path = run_dir / rundir.MODEL / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path
