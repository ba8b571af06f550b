"""One bad request must not fail others: texts are checked alike on every endpoint before they
join a batch, and an item that still fails inside a micro-batch fails alone."""

from __future__ import annotations

import asyncio

import pytest
import requests

from tests.serve_helpers import classifier_run
from tunewise.serving.batching import MicroBatcher
from tunewise.serving.server import background, build_app


def test_a_failing_item_fails_alone_and_its_batch_mates_get_answers():
    poisoned: list[int] = []  # sizes of the batches the bad item was in

    def predict(items: list[str]) -> list[str]:
        if "poison" in items:
            poisoned.append(len(items))
            raise ValueError("cannot tokenize 'poison'")
        return [t.upper() for t in items]

    async def main():
        batcher = MicroBatcher(predict, max_batch=32, max_wait_ms=50)
        texts = [f"good {i}" for i in range(12)] + ["poison"]
        return await asyncio.gather(*(batcher.submit(t) for t in texts), return_exceptions=True)

    results = asyncio.run(main())
    assert results[:12] == [f"GOOD {i}" for i in range(12)]
    assert isinstance(results[12], ValueError) and "poison" in str(results[12])
    assert max(poisoned) > 1 and poisoned[-1] == 1  # it shared a batch that failed, then alone


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with background(build_app(classifier_run(tmp_path_factory.mktemp("poison")))) as url:
        yield url


@pytest.mark.parametrize(("text", "said"), [("\ud800 card", "lone surrogate"), ("a\x00b", "NUL")])
def test_predict_and_feedback_refuse_the_same_broken_text(server, text, said):
    r = requests.post(f"{server}/predict", json={"text": text})
    assert r.status_code == 422 and said in r.json()["detail"]
    r = requests.post(f"{server}/predict", json={"texts": ["my card is lost", text]})
    assert r.status_code == 422 and "text 1 has" in r.json()["detail"]
    fb = {"text": text, "prediction": "card", "verdict": "correct"}
    r = requests.post(f"{server}/feedback", json=fb, headers={"Idempotency-Key": said})
    assert r.status_code == 422 and said in r.json()["detail"]
    ok = requests.post(f"{server}/predict", json={"text": "my card is lost"})
    assert ok.status_code == 200 and ok.json()["label"]
