"""`tunewise serve RUN_DIR`: check the inputs, load the model, open the store, run uvicorn.

    tunewise serve runs/banking77                       # http://127.0.0.1:8000/ (tester page)
    TUNEWISE_API_TOKEN=s3cret tunewise serve runs/banking77 --host 0.0.0.0

A host other than loopback exposes the model and the store to the network, so it needs an API
token (`--api-token` or `TUNEWISE_API_TOKEN`); without one `serve` refuses to start (exit 2).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tunewise.core.errors import InputError, Problem
from tunewise.feedback.store import open_store
from tunewise.serving.about import describe_run
from tunewise.serving.app import Limits, create_app
from tunewise.serving.predictor import load_predictor, run_task

TOKEN_ENV = "TUNEWISE_API_TOKEN"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_access(host: str, port: int, token: str | None) -> str | None:
    """The token to enforce; InputError for a network host without one or a bad port."""
    token = token or os.environ.get(TOKEN_ENV) or None
    problems = []
    if not is_loopback(host) and not token:
        problems.append(
            Problem(
                "serve",
                None,
                "--host",
                f"{host} is reachable from the network and no API token is set",
                f"set {TOKEN_ENV} (or --api-token), or keep --host 127.0.0.1",
            )
        )
    if token is not None and len(token) < 8:
        problems.append(Problem("serve", None, "--api-token", "shorter than 8 characters", ""))
    if not 0 < port < 65536:
        problems.append(Problem("serve", None, "--port", f"{port} is not a TCP port", "1-65535"))
    if problems:
        raise InputError(problems)
    return token


def build_app(
    run_dir: Path,
    feedback_db: str | None = None,
    backend: str = "torch",
    token: str | None = None,
    limits: Limits | None = None,
    threads: int | None = None,
    oos_threshold: float | None = None,
):
    """The app for a run: its predictor and its feedback store (default RUN_DIR/feedback.db)."""

    run_task(Path(run_dir))  # a bad run directory fails before the store is created
    store = open_store(feedback_db, Path(run_dir))
    predictor = load_predictor(Path(run_dir), backend, threads, oos_threshold)
    return create_app(predictor, store, limits, token, about=describe_run(Path(run_dir)))


def serve(
    run_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    feedback_db: str | None = None,
    backend: str = "torch",
    api_token: str | None = None,
    limits: Limits | None = None,
    threads: int | None = None,
    oos_threshold: float | None = None,
) -> None:
    """Serve RUN_DIR's model until interrupted; see the module docstring."""
    import uvicorn

    token = check_access(host, port, api_token)
    app = build_app(Path(run_dir), feedback_db, backend, token, limits, threads, oos_threshold)
    print(f"serving {run_dir} on http://{host}:{port}/ (docs: /docs, metrics: /metrics)")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def background(app, host: str = "127.0.0.1", port: int | None = None) -> Iterator[str]:
    """Run `app` in a thread of this process (tests, benchmarks); yields its base URL."""
    import uvicorn

    port = port or free_port()
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"uvicorn did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
