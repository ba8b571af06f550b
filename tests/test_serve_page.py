"""The tester page in a real browser (Debian's Chromium through Playwright): type a message, see
the prediction, mark it wrong, pick the right label, submit; the row must reach the store. Also
the newcomer's features (issue 22), abstentions and out-of-scope feedback, and /docs offline."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml

from tests.browser import browser_page
from tests.serve_helpers import LABELS, classifier_run
from tunewise.feedback.store import read_feedback
from tunewise.serving.server import background, build_app


@pytest.fixture
def live(tmp_path):
    run = classifier_run(tmp_path / "run")
    config = yaml.safe_load((run / "config.yaml").read_text())  # as a finished run records them
    (run / "config.yaml").write_text(yaml.safe_dump({**config, "model": {"name": "minilm-l6"}}))
    metrics = {"tuned": {"accuracy": 0.875}, "test_size": 40}
    (run / "metrics.json").write_text(json.dumps(metrics))
    with background(build_app(run)) as url:
        yield url, run


def test_a_tester_marks_a_prediction_wrong_and_the_correction_is_stored(live):
    url, run = live
    with browser_page() as page:
        page.goto(url)
        page.wait_for_function("document.querySelectorAll('#correction option').length === 3")
        assert page.inner_text("#count") == "0"
        page.fill("#message", "I still have not received my new card")
        page.click("#predict")
        page.wait_for_selector("#result:not(.hidden)")
        predicted = page.inner_text("#label")
        assert predicted in LABELS and "%" in page.inner_text("#confidence")
        assert page.locator("#topk tr").count() == 3
        correction = next(label for label in LABELS if label != predicted)
        page.click("#wrong")
        page.select_option("#correction", correction)
        page.fill("#comment", "should be card arrival")
        page.click("#submit")
        page.wait_for_function("document.getElementById('count').textContent === '1'")
        assert "saved" in page.inner_text("#status")
        page.fill("#message", "thanks, all good")
        page.click("#predict")
        page.wait_for_selector("#result:not(.hidden)")
        page.click("#right")
        page.click("#submit")
        page.wait_for_function("document.getElementById('count').textContent === '2'")
        assert page.errors == []
    wrong, right = read_feedback(run)
    assert wrong["text"] == "I still have not received my new card"
    assert (wrong["verdict"], wrong["prediction"]) == ("incorrect", predicted)
    assert wrong["correction"] == correction and wrong["comment"] == "should be card arrival"
    assert len(wrong["request_id"]) == 32
    assert (right["verdict"], right["correction"], right["text"]) == (
        "correct",
        None,
        "thanks, all good",
    )


def _csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_the_tester_page_for_a_newcomer(live, tmp_path):
    """Run and model named, Enter predicts (Shift+Enter a new line), a searchable picker of
    readable names, a session history with verdicts, and a CSV batch whose predictions download."""
    url, run = live
    with browser_page() as page:
        page.goto(url)
        page.wait_for_function("document.querySelectorAll('#correction option').length === 3")
        line = page.inner_text("#run-line")
        assert page.inner_text("#run-name") == "Run run"
        assert page.inner_text("#model-name") == "model minilm-l6"
        assert "test accuracy 87.5% on 40 rows" in line
        names = page.eval_on_selector_all("#correction option", "os => os.map(o => o.textContent)")
        assert names == ["Card arrival", "Lost or stolen card", "Request refund"]

        page.click("#message")
        page.keyboard.type("my card")
        page.keyboard.press("Shift+Enter")
        page.keyboard.type("has not come")
        assert page.input_value("#message") == "my card\nhas not come"
        assert page.is_hidden("#result")  # Shift+Enter is a new line, not a prediction
        page.keyboard.press("Enter")
        page.wait_for_selector("#result:not(.hidden)")
        predicted = page.inner_text("#label")
        assert page.inner_text("#label-name") == dict(zip(LABELS, names, strict=True))[predicted]

        page.click("#wrong")
        page.fill("#correction-search", "stolen")
        visible = page.eval_on_selector_all(
            "#correction option", "os => os.filter(o => !o.hidden).map(o => o.value)"
        )
        assert visible == ["lost_or_stolen_card"]
        assert page.input_value("#correction") == "lost_or_stolen_card"
        assert "1 of 3 labels match" in page.inner_text("#correction-matches")
        page.click("#submit")
        page.wait_for_function("document.getElementById('count').textContent === '1'")

        page.fill("#message", "refund please")
        page.press("#message", "Enter")
        page.wait_for_selector("#result:not(.hidden)")
        page.click("#right")
        page.click("#submit")
        page.wait_for_function("document.getElementById('count').textContent === '2'")
        verdicts = page.eval_on_selector_all(
            "#history tbody td.verdict", "ts => ts.map(t => t.textContent)"
        )
        assert verdicts == ["✓ right", "✗ wrong → Lost or stolen card"]  # newest first
        texts = page.eval_on_selector_all(
            "#history tbody td.text", "ts => ts.map(t => t.textContent)"
        )
        assert texts == ["refund please", "my card\nhas not come"]

        rows = 'id,message\n1,where is my card\n2,"refund, now please"\n3,\n4,lost it\n'
        page.set_input_files(
            "#csv-file", {"name": "batch.csv", "mimeType": "text/csv", "buffer": rows.encode()}
        )
        page.wait_for_function("!document.getElementById('csv-run').disabled")
        assert (
            page.eval_on_selector("#csv-column", "s => s.selectedOptions[0].textContent")
            == "message"
        )
        page.click("#csv-run")
        page.wait_for_function("!document.getElementById('csv-download').disabled")
        assert "3 rows predicted, 1 skipped" in page.inner_text("#csv-status")
        assert page.locator("#csv-results tbody tr").count() == 4
        with page.expect_download() as got:
            page.click("#csv-download")
        assert got.value.suggested_filename == "batch-predictions.csv"
        out = _csv(Path(got.value.path()).read_text(encoding="utf-8"))
        page.screenshot(path=str(tmp_path / "tester_page.png"), full_page=True)
        assert page.errors == []
    assert out[0] == ["id", "message", "prediction", "confidence", "abstained", "error"]
    assert [r[:2] for r in out[1:]] == [
        ["1", "where is my card"],
        ["2", "refund, now please"],
        ["3", ""],
        ["4", "lost it"],
    ]
    for r in (out[1], out[2], out[4]):
        assert r[2] in LABELS and 0 < float(r[3]) <= 1 and r[5] == ""
    assert out[3][2:] == ["", "", "", "empty text"]
    stored = read_feedback(run)
    assert [(r["verdict"], r["correction"]) for r in stored] == [
        ("incorrect", "lost_or_stolen_card"),
        ("correct", None),
    ]
    assert stored[0]["text"] == "my card\nhas not come"


def test_an_abstention_and_out_of_scope_feedback(live):
    """A /predict answer with "abstained": true reads "not sure — no intent fits"; "None of these"
    sends correction "out_of_scope". The abstaining answer is the real one with the flag set, and
    /feedback is answered in the browser when it carries out_of_scope: serving does not abstain
    or accept that correction yet (issue 21)."""
    url, _ = live
    sent = []

    def abstain(route):
        if "not sure" not in (route.request.post_data or ""):
            return route.continue_()
        real = route.fetch().json()
        route.fulfill(json={**real, "label": None, "abstained": True})

    def feedback(route):
        body = json.loads(route.request.post_data)
        if body.get("correction") != "out_of_scope":
            return route.continue_()
        sent.append(body)
        route.fulfill(status=201, json={"id": len(sent), "request_id": body["request_id"]})

    with browser_page() as page:
        page.route("**/predict", abstain)
        page.route("**/feedback", feedback)
        page.goto(url)
        page.wait_for_function("document.querySelectorAll('#correction option').length === 3")
        page.fill("#message", "am I not sure what this is")
        page.press("#message", "Enter")
        page.wait_for_selector("#result:not(.hidden)")
        assert page.inner_text("#label-name") == "not sure — no intent fits"
        assert "%" in page.inner_text("#confidence") and page.is_hidden("#right")
        page.click("#out-of-scope")
        page.click("#submit")
        page.wait_for_function("document.getElementById('status').textContent.includes('saved')")

        page.fill("#message", "what is the weather")
        page.press("#message", "Enter")
        page.wait_for_selector("#result:not(.hidden)")
        assert page.is_visible("#right")  # a real label: right, wrong or none of these
        predicted = page.inner_text("#label")
        page.click("#out-of-scope")
        page.click("#submit")
        page.wait_for_function("document.getElementById('status').textContent.includes('saved')")
        verdicts = page.eval_on_selector_all(
            "#history tbody td.verdict", "ts => ts.map(t => t.textContent)"
        )
        preds = page.eval_on_selector_all(
            "#history tbody tr td:nth-child(3)", "ts => ts.map(t => t.textContent)"
        )
        assert page.errors == []
    assert [(b["verdict"], b["prediction"], b["correction"]) for b in sent] == [
        ("correct", None, "out_of_scope"),
        ("incorrect", predicted, "out_of_scope"),
    ]
    assert all(len(b["request_id"]) == 32 for b in sent)
    assert verdicts == ["✗ none of these (out of scope)", "✓ none of these (out of scope)"]
    assert preds[1] == "not sure — no intent fits"


def test_docs_render_with_no_network(live):
    """Swagger UI draws the API with every request outside this server refused."""
    url, _ = live
    outside = []

    def only_local(route):
        if route.request.url.startswith(url):
            return route.continue_()
        outside.append(route.request.url)
        route.abort()

    with browser_page() as page:
        page.route("**/*", only_local)
        page.goto(f"{url}/docs")
        page.wait_for_selector("text=/predict", timeout=15_000)
        assert page.locator(".opblock").count() >= 5
    assert outside == []
