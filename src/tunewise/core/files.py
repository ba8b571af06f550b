"""Small file helpers every stage uses: content hashes and JSON Lines.

sha256_file(run / "model" / "model.safetensors")   # hex digest, read in 4 MiB blocks
append_jsonl(run / "history.jsonl", {"step": 1, "loss": 0.7})
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

BLOCK = 1 << 22


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in blocks (model weights can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(doc: Any) -> str:
    """Hex sha256 of a JSON document with sorted keys: the same content, the same hash."""
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Every non-blank line of a JSON Lines file; [] when the file does not exist."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write rows as JSON Lines (UTF-8, not ASCII-escaped), replacing the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def append_jsonl(path: str | Path, row: dict[str, Any]) -> None:
    """Append one JSON line (history, row records): a crash loses at most the line being written."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_json(path: str | Path, default: Any = None) -> Any:
    """A JSON file's content, or `default` when it does not exist."""
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else default
