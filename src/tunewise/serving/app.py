"""The FastAPI app of `tunewise serve`: predict, generate, feedback, health, metrics, tester page.

Every response carries a `request_id` (JSON body and `X-Request-ID` header). POSTs may carry an
`Idempotency-Key` (required on /feedback): a retried key returns the first answer; the same key
with a different body is a 422. OpenAPI docs are at /docs (and /redoc), served from the assets
the fastapi-offline package bundles, so they work with no network.

    app = create_app(load_predictor(run_dir), open_store(None, run_dir))
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field

from tunewise.core.errors import InputError
from tunewise.data.load import FIX_CHARACTER, broken_character
from tunewise.feedback.store import OUT_OF_SCOPE, FeedbackStore, IdempotencyConflict
from tunewise.serving.batching import MicroBatcher
from tunewise.serving.metrics import Metrics
from tunewise.serving.middleware import Arrivals, RequestMiddleware, queued


@dataclass(frozen=True)
class Limits:
    """Request limits; anything beyond them is a 4xx naming the limit."""

    max_body_bytes: int = 64 * 1024
    max_text_chars: int = 2000
    max_texts: int = 64
    max_new_tokens: int = 256
    max_batch: int = 32
    max_wait_ms: float = 0.0


class PredictIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(None, description="one customer message")
    texts: list[str] | None = Field(None, description="several messages (at most max_texts)")
    top_k: int = Field(5, ge=1, le=100)


class GenerateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str | None = None
    prompts: list[str] | None = None
    max_new_tokens: int = Field(64, ge=1)


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str | None = Field(None, max_length=64, description="from the prediction")
    text: str | None = None
    prediction: str | None = Field(None, max_length=200)
    verdict: Literal["correct", "incorrect"]
    correction: str | None = Field(
        None, max_length=200, description=f"the right label, or '{OUT_OF_SCOPE}' for none"
    )
    comment: str | None = Field(None, max_length=2000)
    user: str | None = Field(None, max_length=200)


class _Recent:
    """A bounded LRU map (recent predictions by request_id; answers by idempotency key)."""

    def __init__(self, size: int = 10000):
        self.size = size
        self.items: OrderedDict[str, Any] = OrderedDict()

    def get(self, key: str) -> Any:
        return self.items.get(key)

    def put(self, key: str, value: Any) -> None:
        self.items[key] = value
        self.items.move_to_end(key)
        while len(self.items) > self.size:
            self.items.popitem(last=False)


def _digest(body: BaseModel) -> str:
    return hashlib.sha256(body.model_dump_json().encode()).hexdigest()


def _error(status: int, detail: Any, request: Request) -> JSONResponse:
    rid = getattr(request.state, "request_id", uuid.uuid4().hex)
    return JSONResponse({"detail": detail, "request_id": rid}, status)  # header: middleware


class Service:
    """What the endpoints share: the model, the store, the limits, the caches and the metrics."""

    def __init__(self, predictor, store: FeedbackStore | None, limits: Limits, token: str | None):
        self.predictor, self.store, self.limits, self.token = predictor, store, limits, token
        self.task = getattr(predictor, "task", "classification")
        self.labels: list[str] = list(getattr(predictor, "labels", []))
        self.metrics = Metrics()
        self.recent, self.answers = _Recent(), _Recent()
        self.arrivals = Arrivals()
        self.batcher = MicroBatcher(
            self._predict_batch,
            limits.max_batch,
            limits.max_wait_ms,
            self.metrics.batch,
            arriving=self.arrivals,
        )

    def _predict_batch(self, items: list[tuple[str, int]]) -> list[dict]:
        top = max(k for _, k in items)
        out = self.predictor.predict([t for t, _ in items], top_k=top)
        self.metrics.abstained(sum(1 for p in out if p.get("abstained")))
        return [{**p, "top_k": p["top_k"][:k]} for p, (_, k) in zip(out, items, strict=True)]

    def check_texts(self, one: str | None, many: list[str] | None, field: str) -> list[str]:
        if (one is None) == (many is None):
            raise HTTPException(422, f"give exactly one of '{field}' or '{field}s'")
        texts = [one] if one is not None else list(many or [])
        if not texts or len(texts) > self.limits.max_texts:
            raise HTTPException(422, f"'{field}s' must hold 1 to {self.limits.max_texts} items")
        for i, t in enumerate(texts):
            if not t.strip():
                raise HTTPException(422, f"{field} {i} is empty")
            if broken := broken_character(t):  # the tokenizer would fail on it, in a batch
                raise HTTPException(422, f"{field} {i} has {broken}; {FIX_CHARACTER}")
            if len(t) > self.limits.max_text_chars:
                raise HTTPException(
                    413,
                    f"{field} {i} has {len(t)} characters; the limit is "
                    f"{self.limits.max_text_chars} (--max-text-chars)",
                )
        return texts

    def authorize(self, request: Request) -> None:
        if self.token is None:
            return
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        given = given or request.headers.get("x-api-token", "")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            raise HTTPException(401, "missing or wrong API token (Authorization: Bearer TOKEN)")

    def replay(self, key: str | None, body: BaseModel) -> dict | None:
        """The answer already given for this key and body; 422 for the key with another body."""
        if not key:
            return None
        seen = self.answers.get(key)
        if seen is None:
            return None
        if seen[0] != _digest(body):
            raise HTTPException(422, f"Idempotency-Key '{key}' was used with a different body")
        return seen[1]

    def remember(self, key: str | None, body: BaseModel, answer: dict) -> dict:
        if key:
            self.answers.put(key, (_digest(body), answer))
        return answer


def create_app(
    predictor,
    store: FeedbackStore | None,
    limits: Limits | None = None,
    token: str | None = None,
    about: dict | None = None,
) -> FastAPI:
    """The serving app over a loaded predictor and an open feedback store; `about`
    (serving/about.py) is what the tester page shows of the run."""
    svc = Service(predictor, store, limits or Limits(), token)
    app = FastAPIOffline(  # /docs and /redoc from bundled assets: they work offline
        title="tunewise serve",
        description="Predictions from a tuned model, and feedback on them from testers.",
        version="1",
        swagger_ui_parameters={"validatorUrl": None},  # no call to the online validator
    )
    app.state.service = svc
    app.state.about = about or {}
    _middleware(app, svc)
    _routes(app, svc)
    return app


def _middleware(app: FastAPI, svc: Service) -> None:
    app.add_middleware(RequestMiddleware, svc=svc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return _error(exc.status_code, exc.detail, request)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        detail = [{"loc": e.get("loc"), "msg": e.get("msg")} for e in exc.errors()]
        return _error(422, detail, request)

    @app.exception_handler(InputError)
    async def bad_input(request: Request, exc: InputError):
        return _error(422, str(exc), request)


def _routes(app: FastAPI, svc: Service) -> None:
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return render_tester_page(app.state.about, svc.limits)

    @app.get("/health", summary="liveness, task, labels and feedback count")
    async def health(request: Request) -> dict:
        counts = await run_in_threadpool(svc.store.count) if svc.store else None
        return {
            "status": "ok",
            "request_id": request.state.request_id,
            "task": svc.task,
            "labels": svc.labels,
            "auth_required": svc.token is not None,
            "feedback": counts,
        }

    @app.get("/metrics", summary="Prometheus text: request counts, latency, batch sizes")
    async def metrics(request: Request) -> Response:
        svc.authorize(request)
        return Response(svc.metrics.render(), media_type=svc.metrics.content_type)

    @app.post("/predict", summary="label, probability and top-k labels for each text")
    async def predict(
        body: PredictIn, request: Request, idempotency_key: str | None = Header(None)
    ) -> dict:
        svc.authorize(request)
        if svc.task != "classification":
            raise HTTPException(400, "this run is a causal LM: POST /generate")
        if (seen := svc.replay(idempotency_key, body)) is not None:
            return seen
        texts = svc.check_texts(body.text, body.texts, "text")
        rid = request.state.request_id
        queued(request.state, svc.arrivals)
        preds = await _gather(svc, texts, body.top_k)
        said = OUT_OF_SCOPE if preds[0].get("abstained") else preds[0]["label"]
        svc.recent.put(rid, (texts[0], said))  # "I don't know" is what the tester judges
        answer = (
            {"request_id": rid, **preds[0]}
            if body.text is not None
            else {"request_id": rid, "predictions": preds}
        )
        return svc.remember(idempotency_key, body, answer)

    @app.post("/generate", summary="greedy continuation of each prompt (causal_lm runs)")
    async def generate(
        body: GenerateIn, request: Request, idempotency_key: str | None = Header(None)
    ) -> dict:
        svc.authorize(request)
        if svc.task != "causal_lm":
            raise HTTPException(400, "this run is a classifier: POST /predict")
        if (seen := svc.replay(idempotency_key, body)) is not None:
            return seen
        prompts = svc.check_texts(body.prompt, body.prompts, "prompt")
        if body.max_new_tokens > svc.limits.max_new_tokens:
            limit = svc.limits.max_new_tokens
            raise HTTPException(422, f"max_new_tokens is at most {limit}")
        out = await svc.batcher.run(lambda: svc.predictor.generate(prompts, body.max_new_tokens))
        rid = request.state.request_id
        svc.recent.put(rid, (prompts[0], out[0]["text"]))
        answer = (
            {"request_id": rid, **out[0]}
            if body.prompt is not None
            else {"request_id": rid, "generations": out}
        )
        return svc.remember(idempotency_key, body, answer)

    @app.post("/feedback", summary="store a tester's verdict once per Idempotency-Key")
    async def feedback(
        body: FeedbackIn, request: Request, idempotency_key: str | None = Header(None)
    ) -> JSONResponse:
        svc.authorize(request)
        if not idempotency_key:
            raise HTTPException(
                400,
                "send an Idempotency-Key header (any unique string, "
                "reused only when retrying the same feedback)",
            )
        if svc.store is None:
            raise HTTPException(503, "no feedback store is configured")
        row = _complete(svc, body)
        try:
            answer, created = await run_in_threadpool(svc.store.add, idempotency_key, row)
        except IdempotencyConflict as exc:
            raise HTTPException(422, str(exc)) from exc
        svc.metrics.feedback(row["verdict"], created)
        return JSONResponse(
            answer, 201 if created else 200, {"Idempotent-Replayed": "false" if created else "true"}
        )


async def _gather(svc: Service, texts: list[str], top_k: int) -> list[dict]:
    return list(await asyncio.gather(*(svc.batcher.submit((t, top_k)) for t in texts)))


def render_tester_page(about: dict, limits: Limits) -> str:
    """page/index.html with the run's description and the request limits inlined as JSON (the
    page needs them before its first request; `<` escaped so no value can close the tag)."""
    info = {**about, "max_texts": limits.max_texts, "max_text_chars": limits.max_text_chars}
    data = json.dumps(info).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    page = resources.files("tunewise.serving").joinpath("page/index.html").read_text()
    return page.replace("__TUNEWISE_ABOUT__", data, 1)


def _complete(svc: Service, body: FeedbackIn) -> dict:
    """The row to store: text and prediction filled from the request_id when omitted. A
    request_id this server did not issue (or no longer remembers: the last 10,000 predictions
    since it started) is refused, so feedback cannot be pinned on predictions never made."""
    row = body.model_dump()
    known = svc.recent.get(row["request_id"]) if row["request_id"] else None
    if row["request_id"] and known is None:
        raise HTTPException(
            422,
            f"request_id '{row['request_id']}' was not issued by this server (it remembers the "
            f"last {svc.recent.size:,} predictions since it started); to store the verdict "
            "anyway, send it without request_id, with the text and the prediction "
            "(offline feedback)",
        )
    if known is not None:
        row["text"] = row["text"] or known[0]
        row["prediction"] = row["prediction"] or known[1]
    if not row["text"] and not row["request_id"]:
        raise HTTPException(422, "give the text or the request_id of the prediction")
    if row["text"] and (broken := broken_character(row["text"])):  # as /predict checks it
        raise HTTPException(422, f"text has {broken}; {FIX_CHARACTER}")
    allowed = [*svc.labels, OUT_OF_SCOPE]
    if row["correction"] and svc.labels and row["correction"] not in allowed:
        fix = f"one of the labels, or '{OUT_OF_SCOPE}' when none fits"
        raise HTTPException(422, f"correction '{row['correction']}' is not {fix}")
    return row
