"""The tester page in a real browser (Debian's Chromium through Playwright): type a message, see
the prediction, mark it wrong, pick the right label, submit; the row must reach the store."""

from __future__ import annotations

import pytest

from tests.browser import browser_page
from tests.serve_helpers import LABELS, classifier_run
from tunewise.feedback.store import read_feedback
from tunewise.serving.server import background, build_app


@pytest.fixture
def live(tmp_path):
    run = classifier_run(tmp_path / "run")
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
