"""`tunewise serve`: predictions, micro-batching, limits, tokens, metrics, docs and generation,
against a real uvicorn server in a thread (tiny random models, so each test takes ~a second)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import yaml

from tests.serve_helpers import LABELS, classifier_run, llama_run
from tunewise.cli import main
from tunewise.core.errors import InputError
from tunewise.feedback.store import open_store
from tunewise.serving.about import describe_run
from tunewise.serving.app import Limits, create_app, render_tester_page
from tunewise.serving.batching import MicroBatcher
from tunewise.serving.predictor import load_predictor
from tunewise.serving.server import background, build_app, check_access


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return classifier_run(tmp_path_factory.mktemp("serve-run"))


@pytest.fixture(scope="module")
def predictor(run_dir):
    return load_predictor(run_dir)


@pytest.fixture(scope="module")
def server(run_dir, predictor):
    app = create_app(predictor, open_store(None, run_dir), Limits(max_text_chars=200))
    with background(app) as url:
        yield url


class SlowCounting:
    """Wraps a predictor: counts forward passes and makes each take 50 ms, so requests queue."""

    def __init__(self, inner):
        self.inner, self.labels, self.task = inner, inner.labels, "classification"
        self.calls: list[int] = []

    def predict(self, texts, top_k=5):
        self.calls.append(len(texts))
        time.sleep(0.05)
        return self.inner.predict(texts, top_k)


def test_predict_gives_label_probabilities_top_k_and_request_id(server, predictor):
    r = requests.post(f"{server}/predict", json={"text": "my card is lost", "top_k": 2})
    assert r.status_code == 200
    body = r.json()
    assert body["request_id"] == r.headers["X-Request-ID"] and len(body["request_id"]) == 32
    assert body["label"] in LABELS and [c["label"] for c in body["top_k"]][0] == body["label"]
    assert len(body["top_k"]) == 2 and body["top_k"][0]["score"] >= body["top_k"][1]["score"]
    full = predictor.predict(["my card is lost"], top_k=3)[0]
    assert sum(c["score"] for c in full["top_k"]) == pytest.approx(1.0, abs=1e-5)
    assert body["score"] == pytest.approx(full["score"], abs=1e-6)
    many = requests.post(f"{server}/predict", json={"texts": ["a refund", "hello"]}).json()
    assert [p["label"] for p in many["predictions"]] == [
        p["label"] for p in predictor.predict(["a refund", "hello"])
    ]


def test_concurrent_requests_share_forward_passes(predictor, run_dir):
    slow = SlowCounting(predictor)
    texts = [f"message number {i} about my card" for i in range(16)]
    app = create_app(slow, None)
    with background(app) as url, ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda t: requests.post(f"{url}/predict", json={"text": t}), texts))
        assert requests.post(f"{url}/predict", json={"text": ""}).status_code == 422
    assert app.state.service.arrivals() == 0  # every accepted request was accounted for
    assert all(a.status_code == 200 for a in answers)
    assert sum(slow.calls) == 16 and len(slow.calls) < 16 and max(slow.calls) > 1
    expected = predictor.predict(texts)
    for got, want in zip(answers, expected, strict=True):  # batching changes no answer
        assert got.json()["label"] == want["label"]
        assert got.json()["score"] == pytest.approx(want["score"], abs=1e-5)


def test_sorted_sub_batches_answer_each_text_as_if_alone(tmp_path):
    predictor = load_predictor(classifier_run(tmp_path / "fp32", precision="fp32"))
    texts = [" ".join(["card"] * (i * 7 % 11 + 1)) + f" refund {i}" for i in range(40)]
    assert len(texts) > predictor.SUB_BATCH  # several sorted sub-batches, lengths interleaved
    together = predictor.predict(texts, top_k=3)
    for text, got in zip(texts, together, strict=True):  # put back in input order
        alone = predictor.predict([text], top_k=3)[0]
        assert [c["label"] for c in got["top_k"]] == [c["label"] for c in alone["top_k"]]
        assert got["score"] == pytest.approx(alone["score"], abs=1e-6)


def test_classifier_serves_in_the_precision_the_run_was_evaluated_in(tmp_path):
    import torch

    from tunewise.core.device import bf16_supported

    auto = load_predictor(classifier_run(tmp_path / "auto"))
    fp32 = load_predictor(classifier_run(tmp_path / "fp32", precision="fp32"))
    assert fp32.bf16 is False and auto.bf16 == bf16_supported(torch.device("cpu"))
    texts = [f"my card number {i} was lost abroad" for i in range(8)]
    gaps = [
        abs(a["score"] - b["score"])
        for a, b in zip(auto.predict(texts), fp32.predict(texts), strict=True)
    ]
    assert max(gaps) < 1e-3  # the same weights and answers, rounded differently
    if auto.bf16:
        assert max(gaps) > 0  # autocast really ran


def test_micro_batcher_gathers_queued_items_into_one_call():
    calls: list[list[int]] = []

    def double(items):
        calls.append(items)
        time.sleep(0.02)
        return [2 * i for i in items]

    async def go():
        batcher = MicroBatcher(double, max_batch=4)
        return await asyncio.gather(*(batcher.submit(i) for i in range(10)))

    assert asyncio.run(go()) == [2 * i for i in range(10)]
    assert max(len(c) for c in calls) == 4 and sum(len(c) for c in calls) == 10


def test_the_batcher_waits_briefly_for_requests_on_their_way():
    calls: list[list[int]] = []
    on_the_way = [1]

    def identity(items):
        calls.append(list(items))
        return items

    async def go():
        batcher = MicroBatcher(identity, arriving=lambda: on_the_way[0], arrival_wait_ms=500)
        first = asyncio.ensure_future(batcher.submit(1))
        await asyncio.sleep(0.05)  # the batch would have left by now without the arrival count
        on_the_way[0] = 0
        second = asyncio.ensure_future(batcher.submit(2))
        return await first, await second

    assert asyncio.run(go()) == (1, 2) and calls == [[1, 2]]


def test_limits_give_clear_4xx(server):
    long = requests.post(f"{server}/predict", json={"text": "x" * 201})
    assert long.status_code == 413 and "limit is 200" in long.json()["detail"]
    big = requests.post(
        f"{server}/predict", data=b"x" * 70_000, headers={"Content-Type": "application/json"}
    )
    assert big.status_code == 413 and "65536" in big.json()["detail"]
    assert requests.post(f"{server}/predict", json={"txt": "hi"}).status_code == 422
    assert requests.post(f"{server}/predict", json={"text": "  "}).status_code == 422
    assert requests.post(f"{server}/predict", json={"texts": ["a"] * 65}).status_code == 422
    assert requests.post(f"{server}/generate", json={"prompt": "hi"}).status_code == 400
    for r in (long, big):
        assert r.json()["request_id"] == r.headers["X-Request-ID"]


def test_feedback_over_http_is_idempotent_and_checks_the_label(server, run_dir):
    pred = requests.post(f"{server}/predict", json={"text": "where is my new card"}).json()
    body = {"request_id": pred["request_id"], "verdict": "incorrect", "correction": LABELS[0]}
    first = requests.post(f"{server}/feedback", json=body, headers={"Idempotency-Key": "fb-1"})
    again = requests.post(f"{server}/feedback", json=body, headers={"Idempotency-Key": "fb-1"})
    assert (first.status_code, again.status_code) == (201, 200) and first.json() == again.json()
    other = {**body, "correction": LABELS[1]}
    clash = requests.post(f"{server}/feedback", json=other, headers={"Idempotency-Key": "fb-1"})
    assert clash.status_code == 422 and "different body" in clash.json()["detail"]
    assert requests.post(f"{server}/feedback", json=body).status_code == 400
    wrong = {**body, "correction": "not-a-label"}
    bad = requests.post(f"{server}/feedback", json=wrong, headers={"Idempotency-Key": "fb-2"})
    assert bad.status_code == 422
    rows = [r for r in open_store(None, run_dir).rows() if r["request_id"] == pred["request_id"]]
    assert len(rows) == 1  # filled in from the prediction the server remembers
    assert rows[0]["text"] == "where is my new card" and rows[0]["prediction"] == pred["label"]


def test_feedback_refuses_a_request_id_never_issued_but_takes_offline_feedback(server, run_dir):
    made_up = {"request_id": "0" * 32, "verdict": "correct", "text": "hi", "prediction": LABELS[0]}
    r = requests.post(f"{server}/feedback", json=made_up, headers={"Idempotency-Key": "fb-3"})
    detail = r.json()["detail"]
    assert r.status_code == 422 and "was not issued by this server" in detail
    assert "without request_id" in detail  # the fix: send it as offline feedback
    offline = {k: v for k, v in made_up.items() if k != "request_id"}
    r = requests.post(f"{server}/feedback", json=offline, headers={"Idempotency-Key": "fb-4"})
    assert r.status_code == 201
    rows = open_store(None, run_dir).rows()
    assert not [x for x in rows if x["request_id"] == "0" * 32]
    assert [x for x in rows if x["text"] == "hi" and x["request_id"] is None]


def test_docs_load_their_assets_from_this_server(server):
    """Swagger UI and ReDoc come from the fastapi-offline package: nothing from a CDN."""
    for page in ("docs", "redoc"):
        html = requests.get(f"{server}/{page}").text
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert assets and all(a.startswith("/") for a in assets), assets
        for a in assets:
            got = requests.get(f"{server}{a}")
            assert got.status_code == 200 and len(got.content) > 1000, a


def test_the_page_names_the_run_the_model_and_its_test_score(tmp_path):
    run = classifier_run(tmp_path / "named-run")
    metrics = {
        "tuned": {"accuracy": 0.9},
        "baseline": {"accuracy": 0.8},
        "baseline_name": "linear_probe",
        "test_size": 40,
    }
    (run / "metrics.json").write_text(json.dumps(metrics))
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["model"]["name"] = "minilm-l6</script><b>"
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    about = describe_run(run)
    assert (about["run"], about["model"], about["task"]) == (
        "named-run",
        "minilm-l6</script><b>",
        "classification",
    )
    assert about["test"] == {
        "accuracy": 0.9,
        "rows": 40,
        "baseline": "linear_probe",
        "baseline_accuracy": 0.8,
    }
    html = render_tester_page(about, Limits(max_texts=7))
    inlined = re.search(r'<script id="about" type="application/json">(.*?)</script>', html, re.S)
    assert json.loads(inlined.group(1)) == {**about, "max_texts": 7, "max_text_chars": 2000}
    assert "<" not in inlined.group(1)  # a value cannot close the tag
    (run / "metrics.json").write_text("{not json")
    assert "test" not in describe_run(run)  # an unreadable file says less, it does not fail


def test_metrics_health_and_docs(server):
    requests.post(f"{server}/predict", json={"text": "count me"})
    text = requests.get(f"{server}/metrics").text
    assert 'tunewise_requests_total{method="POST",path="/predict",status="200"}' in text
    assert "tunewise_request_seconds_bucket" in text and "tunewise_batch_size_count" in text
    health = requests.get(f"{server}/health").json()
    assert health["labels"] == LABELS and health["task"] == "classification"
    paths = requests.get(f"{server}/openapi.json").json()["paths"]
    assert {"/predict", "/feedback", "/generate", "/health", "/metrics"} <= set(paths)
    assert requests.get(f"{server}/docs").status_code == 200
    assert "tunewise tester" in requests.get(server).text


def test_a_network_host_needs_a_token(run_dir, monkeypatch, capsys):
    monkeypatch.delenv("TUNEWISE_API_TOKEN", raising=False)
    with pytest.raises(InputError, match="no API token"):
        check_access("0.0.0.0", 8000, None)
    assert check_access("127.0.0.1", 8000, None) is None
    assert check_access("::1", 8000, None) is None
    assert check_access("0.0.0.0", 8000, "long-enough-token") == "long-enough-token"
    assert main(["serve", str(run_dir), "--host", "0.0.0.0"]) == 2  # refuses before loading
    assert "TUNEWISE_API_TOKEN" in capsys.readouterr().err


def test_a_token_is_enforced_when_set(run_dir):
    app = build_app(run_dir, token="s3cret-token")
    with background(app) as url:
        assert requests.post(f"{url}/predict", json={"text": "hi"}).status_code == 401
        auth = {"Authorization": "Bearer s3cret-token"}
        assert requests.post(f"{url}/predict", json={"text": "hi"}, headers=auth).ok
        assert requests.get(f"{url}/metrics").status_code == 401
        assert requests.get(f"{url}/health").json()["auth_required"] is True


def test_a_bad_run_directory_is_an_input_error(tmp_path):
    assert main(["serve", str(tmp_path / "missing")]) == 2
    assert not (tmp_path / "missing").exists()


def test_generate_with_a_tiny_llama(tmp_path):
    run = llama_run(tmp_path / "llm")
    with background(build_app(run)) as url:
        r = requests.post(f"{url}/generate", json={"prompt": "hello there", "max_new_tokens": 4})
        assert r.status_code == 200 and isinstance(r.json()["text"], str)
        assert r.json()["request_id"] == r.headers["X-Request-ID"]
        many = requests.post(f"{url}/generate", json={"prompts": ["a", "b c"], "max_new_tokens": 3})
        assert len(many.json()["generations"]) == 2
        assert requests.post(f"{url}/predict", json={"text": "hi"}).status_code == 400
        too_many = {"prompt": "hi", "max_new_tokens": 10_000}
        assert requests.post(f"{url}/generate", json=too_many).status_code == 422
    model = load_predictor(run)
    once = model.generate(["hello there"], 4)[0]["text"]
    assert once == model.generate(["hello there"], 4)[0]["text"]  # greedy: deterministic
    assert model.render("hello there") == "hello there"


def test_generate_uses_the_chat_template_the_run_was_trained_with(tmp_path):
    model = load_predictor(llama_run(tmp_path / "chat", chat=True))
    assert model.render("where is my card") == "<|user|>where is my card\n<|assistant|>"
    (out,) = model.generate(["where is my card"], 3)
    assert isinstance(out["text"], str) and out["tokens"] <= 3


def test_predict_replays_an_idempotency_key(server):
    key = {"Idempotency-Key": "predict-1"}
    first = requests.post(f"{server}/predict", json={"text": "lost card"}, headers=key).json()
    again = requests.post(f"{server}/predict", json={"text": "lost card"}, headers=key).json()
    assert first == again  # the same request_id: the first answer, not a new prediction
    other = requests.post(f"{server}/predict", json={"text": "refund"}, headers=key)
    assert other.status_code == 422
