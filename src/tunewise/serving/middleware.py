"""One plain ASGI middleware for every request: a request id, the body-size limit, metrics, and
the count of /predict requests still on their way to the batcher.

Plain ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware wraps each
request in extra tasks and streams, which costs more than the model at batch 1 with ONNX.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any


class Arrivals:
    """How many /predict requests have been accepted but not yet queued for the model; the
    batcher waits a moment for them instead of running a batch they just missed."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> int:
        return self.count


class RequestMiddleware:
    def __init__(self, app: Any, svc: Any):
        self.app, self.svc = app, svc

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        start, method, path = time.perf_counter(), scope["method"], scope["path"]
        status = 500

        async def send_with_id(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        refusal = self._refuse(scope) if method == "POST" else None
        arriving = path == "/predict" and refusal is None
        if arriving:
            state["arriving"] = True
            self.svc.arrivals.count += 1
        try:
            if refusal is None:
                await self.app(scope, receive, send_with_id)
            else:
                await _send_json(
                    send_with_id, refusal[0], {"detail": refusal[1], "request_id": rid}
                )
        finally:
            if arriving and state.get("arriving"):
                self.svc.arrivals.count -= 1
            self.svc.metrics.observe(path, method, status, start)

    def _refuse(self, scope: dict) -> tuple[int, str] | None:
        """411/413 before the body is read: no Content-Length, or more than the limit."""
        size = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if size is None:
            return 411, "send a Content-Length header"
        limit = self.svc.limits.max_body_bytes
        if not size.isdigit() or int(size) > limit:
            return 413, f"body is {size.decode(errors='replace')} bytes; the limit is {limit}"
        return None


def queued(state: Any, arrivals: Arrivals) -> None:
    """Mark a /predict request as handed to the batcher (called once, before submitting)."""
    if getattr(state, "arriving", False):
        state.arriving = False
        arrivals.count -= 1


async def _send_json(send: Any, status: int, body: dict) -> None:
    payload = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
