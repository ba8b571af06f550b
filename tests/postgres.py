"""A real PostgreSQL server for storage tests: the one named by TUNEWISE_TEST_POSTGRES_URL, else a
throwaway cluster started from Debian's binaries (`apt-get install postgresql`) on 127.0.0.1 and
a free port, in a temp dir, stopped and removed at the end.

Locally, without PostgreSQL, the tests that need it are skipped; under CI (`CI` set) they fail,
since .ci/run installs the package and a skip would hide a storage that was never tested.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required under CI: {reason}")
    pytest.skip(f"no PostgreSQL: {reason}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(cmd: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the `postgres` account then."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


def _run(cmd: list[str]) -> None:
    done = subprocess.run(_as_server_user(cmd), capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        _unavailable(f"{' '.join(cmd[:2])} failed: {done.stderr.strip()[-500:]}")


@contextmanager
def postgres_server() -> Iterator[str]:
    """A PostgreSQL URL whose database the test may write to (use in a session fixture)."""
    given = os.environ.get("TUNEWISE_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    initdbs = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not initdbs:
        _unavailable("no /usr/lib/postgresql/*/bin/initdb (apt-get install postgresql)")
    bindir = Path(initdbs[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="tunewise-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", _free_port()
    _run([str(bindir / "initdb"), "-D", str(data), "-U", "tunewise", "--auth=trust", "-E", "UTF8"])
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root}"
    _run(
        [
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(root / "log"),
            "-w",
            "start",
        ]
    )
    try:
        yield f"postgresql://tunewise@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)
