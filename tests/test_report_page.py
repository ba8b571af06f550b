"""report.html in a real browser (Debian's Chromium through Playwright), opened from disk with
every network request refused: the verdict is on the first screen, its reasons lead to their
sections, and the per-class table sorts by any column."""

from __future__ import annotations

import json

from tests.browser import browser_page
from tests.test_report import _metrics, _run_dir
from tunewise.report.html import write_report


def _report(tmp_path):
    metrics = _metrics(8)
    base_f1 = [0.9, 0.5, 0.7, 0.8, 0.6, 0.95, 0.4, 0.85]
    metrics["baseline_per_class"] = [
        {**r, "f1": f} for r, f in zip(metrics["per_class"], base_f1, strict=True)
    ]
    run = _run_dir(tmp_path, metrics)
    leak = {"code": "leakage", "severity": "warning", "message": "3 test rows leak", "remedy": "x"}
    (run / "audit.json").write_text(json.dumps([leak]))
    (run / "doctor.json").write_text(json.dumps([leak]))
    return write_report(run), metrics


def _column(page, index: int) -> list[str]:
    return page.eval_on_selector_all(
        "#per-class-table tbody tr", f"rows => rows.map(r => r.cells[{index}].textContent.trim())"
    )


def test_the_verdict_is_on_the_first_screen_and_the_table_sorts(tmp_path):
    out, metrics = _report(tmp_path)
    with browser_page() as page:
        requests: list[str] = []
        page.route("**/*", lambda route: (requests.append(route.request.url), route.continue_()))
        page.goto(out.resolve().as_uri())
        box = page.locator("#verdict")
        assert box.is_visible() and box.bounding_box()["y"] + 100 < 900  # first screen
        assert page.inner_text("#verdict-title") == "Ship with care"
        assert "but 1 warning needs a look" in page.inner_text("#verdict .decision-summary")
        reasons = page.locator("#verdict .reasons a")
        assert reasons.count() == 2  # the significance line and leakage, once
        assert "found by audit and doctor" in reasons.nth(1).inner_text()
        reasons.nth(1).click()
        assert page.evaluate("location.hash") == "#finding-leakage"
        assert page.locator("#finding-leakage").is_visible()

        tuned = [f"{r['f1']:.3f}" for r in sorted(metrics["per_class"], key=lambda r: r["f1"])]
        assert _column(page, 3) == tuned  # worst tuned F1 first, as rendered
        page.click("#per-class-table th:nth-child(5) button")  # Δ F1, ascending
        deltas = [float(x) for x in _column(page, 4)]
        assert deltas == sorted(deltas) and deltas[0] < 0 < deltas[-1]
        assert page.get_attribute("#per-class-table th:nth-child(5)", "aria-sort") == "ascending"
        page.click("#per-class-table th:nth-child(5) button")
        assert [float(x) for x in _column(page, 4)] == sorted(deltas, reverse=True)
        page.click("#per-class-table th:nth-child(1) button")  # class names, A to Z
        assert _column(page, 0) == sorted(r["label"] for r in metrics["per_class"])
        assert page.get_attribute("#per-class-table th:nth-child(5)", "aria-sort") is None
        assert page.errors == []
    assert all(url.startswith("file://") for url in requests), requests  # nothing else fetched
