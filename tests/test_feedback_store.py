"""The feedback store: idempotent, durable, the same on SQLite and PostgreSQL.

The durability test is the real thing: hundreds of concurrent POSTs (with retried keys) to a
`tunewise serve` subprocess, `kill -9` while they are in flight, a restart, and then every
acknowledged row must be there exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.postgres import postgres_server
from tests.serve_helpers import classifier_run
from tunewise.core.errors import InputError
from tunewise.feedback.store import IdempotencyConflict, open_store, read_feedback
from tunewise.serving.server import free_port

ROW_KEYS = {
    "id",
    "request_id",
    "text",
    "prediction",
    "verdict",
    "correction",
    "comment",
    "user",
    "created_at",
}


@pytest.fixture(scope="module")
def postgres_url():
    with postgres_server() as url:
        yield url


def body(i: int, verdict: str = "incorrect") -> dict:
    return {
        "text": f"message {i}",
        "prediction": "card_arrival",
        "verdict": verdict,
        "correction": "request_refund" if verdict == "incorrect" else None,
        "comment": f"row {i}",
    }


def test_a_key_stores_one_row_and_replays_the_first_answer(tmp_path):
    store = open_store(None, tmp_path)
    first, created = store.add("k", body(1))
    again, created_again = store.add("k", body(1))
    assert (created, created_again) == (True, False) and first == again
    with pytest.raises(IdempotencyConflict, match="different body"):
        store.add("k", body(2))
    rows = read_feedback(tmp_path)  # the run directory works as the address
    assert len(rows) == 1 and set(rows[0]) >= ROW_KEYS
    assert rows[0]["text"] == "message 1" and rows[0]["correction"] == "request_refund"
    assert read_feedback(tmp_path / "feedback.db") == rows == read_feedback(store.url)


def test_sqlite_is_wal_with_full_sync(tmp_path):
    store = open_store(None, tmp_path)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_bad_bodies_and_keys_are_input_errors(tmp_path):
    store = open_store(None, tmp_path)
    for bad in (
        {"text": "x", "verdict": "maybe"},
        {"verdict": "correct"},
        {"text": "x", "verdict": "correct", "colour": "red"},
    ):
        with pytest.raises(InputError):
            store.add("k", bad)
    with pytest.raises(InputError):
        store.add("", body(1))
    with pytest.raises(InputError, match="no feedback store"):
        read_feedback(tmp_path / "elsewhere")
    assert store.count()["total"] == 0


def _hammer(store, n_keys: int = 120, repeats: int = 3) -> None:
    keys = [f"key-{i % n_keys}" for i in range(n_keys * repeats)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda k: store.add(k, body(int(k[4:])))[0]["id"], keys))
    by_key: dict[str, set] = {}
    for k, a in zip(keys, answers, strict=True):
        by_key.setdefault(k, set()).add(a)
    assert all(len(ids) == 1 for ids in by_key.values())  # every retry got the first answer
    rows = store.rows()
    assert len(rows) == n_keys and len({r["text"] for r in rows}) == n_keys


def test_concurrent_adds_with_repeats_store_each_key_once_on_sqlite(tmp_path):
    _hammer(open_store(None, tmp_path))


def test_concurrent_adds_with_repeats_store_each_key_once_on_postgresql(postgres_url, tmp_path):
    store = open_store(postgres_url, tmp_path)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM feedback")
    _hammer(store)
    assert not (tmp_path / "feedback.db").exists()


def _start(run_dir: Path, url: str | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "tunewise", "serve", str(run_dir), "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, *(["--feedback-db", url] if url else [])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if requests.get(f"{base}/health", timeout=2).ok:
                return proc, base
        except requests.ConnectionError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("serve did not start in 120 s")


def _post_until_killed(proc, base: str, n_keys: int, total: int, kill_after: int) -> dict:
    """POST `total` feedback items over `n_keys` keys from 32 threads; kill -9 the server once
    `kill_after` were acknowledged. Returns {key: acknowledged answer}."""
    acked: dict[str, dict] = {}
    lock = threading.Lock()

    def send(i: int) -> None:
        key = f"fb-{i % n_keys}"
        try:
            r = requests.post(
                f"{base}/feedback",
                json=body(i % n_keys),
                timeout=30,
                headers={"Idempotency-Key": key},
            )
        except requests.RequestException:
            return  # not acknowledged: the server died first
        if r.status_code in (200, 201):
            with lock:
                assert acked.setdefault(key, r.json()) == r.json()  # replays match
                if len(acked) >= kill_after and proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(send, range(total)))
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL  # the server was killed, not stopped cleanly
    return acked


def _kill_restart_check(run_dir: Path, url: str | None) -> None:
    n_keys = 300
    proc, base = _start(run_dir, url)
    acked = _post_until_killed(proc, base, n_keys, total=450, kill_after=200)
    assert 200 <= len(acked) < n_keys  # killed mid-stream: some keys never got an answer
    proc, base = _start(run_dir, url)
    try:
        rows = read_feedback(url or run_dir)
        by_text: dict[str, list] = {}
        for r in rows:
            by_text.setdefault(r["text"], []).append(r)
        assert all(len(v) == 1 for v in by_text.values())  # nothing stored twice
        for key, answer in acked.items():  # every acknowledged row survived, exactly once
            (row,) = by_text[f"message {int(key[3:])}"]
            assert row["id"] == answer["id"]
        key, answer = next(iter(acked.items()))
        replay = requests.post(
            f"{base}/feedback",
            json=body(int(key[3:])),
            headers={"Idempotency-Key": key},
            timeout=30,
        )
        assert replay.status_code == 200 and replay.json() == answer
    finally:
        proc.kill()
        proc.wait(10)
    assert len(read_feedback(url or run_dir)) == len(rows)


def test_kill_9_loses_no_acknowledged_row_on_sqlite(tmp_path_factory):
    _kill_restart_check(classifier_run(tmp_path_factory.mktemp("kill-sqlite")), None)


def test_kill_9_loses_no_acknowledged_row_on_postgresql(tmp_path_factory, postgres_url):
    store = open_store(postgres_url, Path("."))
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM feedback")
    store.close()
    _kill_restart_check(classifier_run(tmp_path_factory.mktemp("kill-pg")), postgres_url)
