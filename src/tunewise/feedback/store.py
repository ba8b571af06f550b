"""The feedback store: what testers say about predictions, kept exactly once and never lost.

SQLite by default at `RUN_DIR/feedback.db` (WAL journal, `synchronous=FULL`, so a row is on disk
before `add` returns), PostgreSQL or any SQLAlchemy URL otherwise. Every write carries an
idempotency key: the same key with the same body stores one row and returns the first answer;
the same key with a different body is refused.

    store = open_store(None, Path("runs/banking77"))
    answer, created = store.add("key-1", {"text": "my card is lost", "prediction": "lost_card",
                                          "verdict": "correct"})
    rows = read_feedback("runs/banking77")
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from tunewise.core import rundir
from tunewise.core.errors import InputError, Problem

VERDICTS = ("correct", "incorrect")
# The correction (or, for an abstained answer, the prediction) meaning "none of the intents":
# `refine` learns such rows as out-of-scope examples (eval.oos.label), never as a class.
OUT_OF_SCOPE = "out_of_scope"
FIELDS = ("request_id", "text", "prediction", "verdict", "correction", "comment", "user")
MAX_KEY = 200

metadata = sa.MetaData()
feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("idempotency_key", sa.String(MAX_KEY), nullable=False, unique=True),
    sa.Column("body_sha256", sa.String(64), nullable=False),
    sa.Column("request_id", sa.String(64)),
    sa.Column("text", sa.Text),
    sa.Column("prediction", sa.String(200)),
    sa.Column("verdict", sa.String(16), nullable=False),
    sa.Column("correction", sa.String(200)),
    sa.Column("comment", sa.Text),
    sa.Column("user", sa.String(200)),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("response", sa.Text, nullable=False),
)


class IdempotencyConflict(InputError):
    """The key was already used for a different body (HTTP 422; exit 2 from Python callers)."""

    def __init__(self, key: str):
        super().__init__(
            [
                Problem(
                    "feedback",
                    None,
                    "Idempotency-Key",
                    f"key '{key}' was already used with a different body",
                    "send a new key for a new feedback item; reuse a key only to retry",
                )
            ]
        )


def default_url(run_dir: Path) -> str:
    return f"sqlite:///{Path(run_dir).resolve() / 'feedback.db'}"


def _engine(url: str) -> sa.Engine:
    """An engine whose SQLite connections use WAL + synchronous=FULL (durable on commit)."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)
    engine = sa.create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(conn, _record) -> None:
        conn.isolation_level = None  # let SQLAlchemy's BEGIN below be the only transaction control
        cur = conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock up front: no upgrade deadlock

    return engine


def _validate(body: dict) -> dict:
    """The body as stored: known fields only, a verdict, and a text or a request_id."""
    unknown = sorted(set(body) - set(FIELDS))
    problems = [Problem("feedback", None, k, "unknown field", f"one of {FIELDS}") for k in unknown]
    if body.get("verdict") not in VERDICTS:
        got = f"got {body.get('verdict')!r}"
        problems.append(Problem("feedback", None, "verdict", got, "correct or incorrect"))
    if not body.get("text") and not body.get("request_id"):
        problems.append(
            Problem("feedback", None, "text", "neither text nor request_id given", "send one")
        )
    if problems:
        raise InputError(problems)
    return {k: (None if body.get(k) is None else str(body[k])) for k in FIELDS}


def _digest(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class FeedbackStore:
    """Idempotent writes to the `feedback` table; see the module docstring."""

    def __init__(self, url: str):
        self.url = url
        try:
            self.engine = _engine(url)
            metadata.create_all(self.engine)
        except (sa.exc.ArgumentError, sa.exc.DBAPIError, ImportError) as exc:
            raise _unusable(url, exc) from None

    def add(self, key: str, body: dict) -> tuple[dict, bool]:
        """Store `body` once under `key`: (the answer, True) first time, (same answer, False) after.

        Raises IdempotencyConflict when `key` was stored with a different body.
        """
        if not key or len(key) > MAX_KEY:
            raise InputError(
                [Problem("feedback", None, "Idempotency-Key", "missing or too long", "1-200 chars")]
            )
        row = _validate(body)
        digest = _digest(row)
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        try:
            with self.engine.begin() as conn:
                inserted = conn.execute(
                    feedback.insert().values(
                        idempotency_key=key,
                        body_sha256=digest,
                        created_at=now,
                        response="",
                        **row,
                    )
                ).inserted_primary_key
                assert inserted is not None
                new_id = inserted[0]
                answer = {
                    "id": new_id,
                    "request_id": row["request_id"],
                    "verdict": row["verdict"],
                    "created_at": now,
                }
                conn.execute(
                    feedback.update()
                    .where(feedback.c.id == new_id)
                    .values(response=json.dumps(answer))
                )
            return answer, True
        except IntegrityError:
            return self._existing(key, digest), False

    def _existing(self, key: str, digest: str) -> dict:
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(feedback.c.body_sha256, feedback.c.response).where(
                    feedback.c.idempotency_key == key
                )
            ).first()
        if found is None:  # the unique violation was something else entirely
            raise RuntimeError(f"feedback insert failed for key {key!r} but no row holds it")
        if found.body_sha256 != digest:
            raise IdempotencyConflict(key)
        return json.loads(found.response)

    def count(self) -> dict[str, int]:
        """Rows per verdict and in total, for the tester page and /metrics."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(feedback.c.verdict, sa.func.count()).group_by(feedback.c.verdict)
            ).all()
        counts = {verdict: n for verdict, n in rows}
        return {"total": sum(counts.values()), **{v: counts.get(v, 0) for v in VERDICTS}}

    def rows(self) -> list[dict[str, Any]]:
        cols = [feedback.c.id, *(feedback.c[f] for f in FIELDS), feedback.c.created_at]
        with self.engine.connect() as conn:
            result = conn.execute(sa.select(*cols).order_by(feedback.c.id))
            return [dict(r._mapping) for r in result]

    def close(self) -> None:
        self.engine.dispose()


def open_store(url: str | None, run_dir: Path) -> FeedbackStore:
    """The store at `url` (a SQLAlchemy URL or a file path), or the default SQLite file
    `RUN_DIR/feedback.db` when url is None."""
    return FeedbackStore(as_url(url) if url else default_url(Path(run_dir)))


def as_url(given: str) -> str:
    """A SQLAlchemy URL as given; a file path as the SQLite URL of that file."""
    return given if "://" in given else f"sqlite:///{Path(given).resolve()}"


def _unusable(url: str, exc: BaseException) -> InputError:
    """`--feedback-db` that cannot be opened, named without its password."""
    try:
        shown = sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        shown = url
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    fix = (
        "give a file path, sqlite:///PATH in a writable folder, or "
        "postgresql://USER:PASSWORD@HOST:PORT/DB of a running server"
    )
    return InputError([Problem(shown, None, "--feedback-db", f"cannot open: {reason}", fix)])


def read_feedback(url_or_path: str | Path) -> list[dict[str, Any]]:
    """Every feedback row, oldest first, as dicts (id, request_id, text, prediction, verdict,
    correction, comment, user, created_at). Accepts a URL, a .db file or a run directory."""
    given = str(url_or_path)
    if "://" not in given:
        path = Path(given)
        if path.is_dir():
            path = path / rundir.FEEDBACK_DB
        if not path.is_file():
            raise InputError(
                [
                    Problem(
                        str(path),
                        None,
                        "feedback-db",
                        "no feedback store here",
                        "run `tunewise serve RUN_DIR` and collect feedback first",
                    )
                ]
            )
        given = as_url(str(path))
    store = FeedbackStore(given)
    try:
        return store.rows()
    finally:
        store.close()
