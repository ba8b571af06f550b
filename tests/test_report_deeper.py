"""Report sections of the deeper evaluation: slices, calibration, forgetting, error analysis."""

from __future__ import annotations

import json

import numpy as np

from tests.test_report import IMG_SRC, _metrics
from tunewise.evaluation.calibration import calibration_report
from tunewise.evaluation.error_analysis import error_report
from tunewise.evaluation.slices import slice_report
from tunewise.report.html import write_report


def deeper_metrics() -> dict:
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(300, 5))
    y = rng.integers(0, 5, 300)
    pred = logits.argmax(1)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    lengths = ["≤8 tokens"] * 150 + ["≥9 tokens"] * 140 + ["x"] * 10
    texts = [f"<b>text {i}</b>" for i in range(300)]
    labels = [f"label_{i}" for i in range(5)]
    task = {"name": "trec", "base_accuracy": 0.89, "tuned_accuracy": 0.73, "delta": -0.16}
    return {
        **_metrics(),
        "slices": slice_report(y, pred, {"length": lengths}),
        "calibration": calibration_report(probs.max(1), pred == y, 1.3, probs.max(1) ** 1.3, 100),
        "errors": error_report(pred, probs.max(1), y, texts, list(range(2, 302)), labels),
        "forgetting": {
            "tasks": [{**task, "ci95": [-0.2, -0.12], "train_size": 2000, "test_size": 500}],
            "mean_delta": -0.16,
            "skipped": [{"name": "sst2", "reason": "data not found: /x/sst2/stsa.binary.train"}],
            "probe": {"C": 10.0},
        },
    }


def render(tmp_path, metrics: dict) -> str:
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    return write_report(tmp_path).read_text()


def test_sections_render_with_the_worst_slice_in_the_headline(tmp_path):
    metrics = deeper_metrics()
    html = render(tmp_path, metrics)
    for section in ("slices", "calibration", "forgetting", "errors"):
        assert f'<section id="{section}">' in html, section
    worst = metrics["slices"]["worst"]
    headline = html.split('<section id="headline">')[1].split("</section>")[0]
    assert f"worst slice: length = {worst['value']}" in headline
    assert f"{-worst['gap']:+.4f} vs overall" in headline
    assert "x (10 rows)" in html  # the skipped slice is listed, not hidden
    assert f"{metrics['calibration']['ece']:.3f}" in html
    assert "[-0.2000, -0.1200]" in html and "Skipped sst2: data not found" in html
    assert "&lt;b&gt;text" in html and "<b>text" not in html  # user text is escaped
    images = IMG_SRC.findall(html.split('<section id="calibration">')[1].split("</section>")[0])
    assert len(images) == 1 and images[0].startswith("data:image/png;base64,")


def test_old_or_malformed_sections_do_not_break_the_report(tmp_path):
    html = render(tmp_path, _metrics())
    assert '<section id="slices">' not in html and "worst slice" not in html
    broken = {**_metrics(), "slices": "junk", "calibration": {"ece": None}, "errors": [1]}
    broken["forgetting"] = {"tasks": [{"name": "x"}], "note": "eval.forgetting is empty"}
    html = render(tmp_path, broken)
    assert '<section id="calibration">' not in html and "eval.forgetting is empty" in html
