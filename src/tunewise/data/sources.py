"""Where data sets come from: the user's path, the offline mirror, or the original source.

`TUNEWISE_DATA_DIR` names a folder of data sets. When it is unset, `../shared/data` beside the
checkout (or beside the current directory) is used if it exists, else a per-user cache that
`fetch_known` fills from the data set's original download address.
"""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

from tunewise.core.errors import InputError, Problem

ENV_VAR = "TUNEWISE_DATA_DIR"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tunewise" / "data"

# relative path under the data dir -> original download address
KNOWN_FILES = {
    "banking77/train.csv": "https://raw.githubusercontent.com/PolyAI-LDN/task-specific-datasets/master/banking_data/train.csv",
    "banking77/test.csv": "https://raw.githubusercontent.com/PolyAI-LDN/task-specific-datasets/master/banking_data/test.csv",
    "banking77/categories.json": "https://raw.githubusercontent.com/PolyAI-LDN/task-specific-datasets/master/banking_data/categories.json",
}


def data_dir() -> Path:
    """The folder `${TUNEWISE_DATA_DIR}` expands to."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    checkout = Path(__file__).resolve().parents[3]  # src/tunewise/data/sources.py -> repo root
    for candidate in (checkout.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    return CACHE_DIR


def resolve(path: str | Path, field: str, origin: str = "config") -> Path:
    """Return an existing local path for `path`, downloading a known data set file if needed."""
    path = Path(path).expanduser()
    if path.exists():
        return path
    known = _known_name(path)
    if known is None:
        raise InputError(
            [
                Problem(
                    origin,
                    None,
                    field,
                    f"file not found: {path}",
                    f"check the path, or set {ENV_VAR} to the folder that holds it",
                )
            ]
        )
    target = CACHE_DIR / known
    if not target.exists():
        _download(KNOWN_FILES[known], target, field, origin)
    return target


def _known_name(path: Path) -> str | None:
    parts = path.as_posix()
    return next((name for name in KNOWN_FILES if parts.endswith(name)), None)


def _download(url: str, target: Path, field: str, origin: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(tmp, "wb") as out:
            out.write(response.read())
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(
            [
                Problem(
                    origin,
                    None,
                    field,
                    f"not found locally and the download from {url} failed ({exc})",
                    f"set {ENV_VAR} to a folder holding {target.parent.name}/{target.name} "
                    "(e.g. an offline mirror such as ../shared/data), or give a local path",
                )
            ]
        ) from exc
    tmp.replace(target)
