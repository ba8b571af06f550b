"""Read chat and instruction data for supervised fine-tuning, every problem with its line number.

Three shapes per JSON line, told apart by their keys (or forced with `sft.format`):

    {"messages": [{"role": "system|user|assistant", "content": "..."}]}   chat
    {"turns": [{"role": "user|agent", "content": "..."}]}                 CuCom (roles mapped)
    {"instruction": "...", "input": "...", "output": "..."}               Alpaca
    {"instruction": "...", "instances": [{"input", "output"}]}            Self-Instruct

Other role names map to system/user/assistant through `sft.role_map` (any case). A `.zip` holding
one JSONL file is read in place (CuCom ships that way). `strict=False` skips bad lines and counts
them instead (for general-knowledge probes such as Alpaca-Libre, which has malformed lines).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunewise.core.errors import InputError, Problem
from tunewise.data.load import FIX_CHARACTER, broken_character

ROLES = ("system", "user", "assistant")
DEFAULT_ROLE_MAP = {
    "system": "system",
    "user": "user",
    "human": "user",
    "customer": "user",
    "assistant": "assistant",
    "agent": "assistant",
    "bot": "assistant",
    "gpt": "assistant",
    "model": "assistant",
}
FORMATS = ("auto", "chat", "alpaca")


@dataclass
class Conversation:
    """One training example: messages with roles already mapped, and where it came from."""

    messages: list[dict[str, str]]
    line: int
    id: str = ""

    def assistant_turns(self) -> list[int]:
        return [i for i, m in enumerate(self.messages) if m["role"] == "assistant"]


@dataclass
class Conversations:
    """The conversations of one file, and what was skipped (non-strict reading only)."""

    items: list[Conversation]
    source: str
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)

    def subset(self, idx: list[int]) -> Conversations:
        return Conversations([self.items[i] for i in idx], self.source, dict(self.skipped))


def read_conversations(
    path: str | Path,
    role_map: dict[str, str] | None = None,
    fmt: str = "auto",
    field_name: str = "data.train",
    strict: bool = True,
    messages_key: str | None = None,
) -> Conversations:
    """Parse and check every line; strict: one InputError listing every bad line.

    read_conversations("cucom.jsonl.zip", {"agent": "assistant"})
    """
    roles = {**DEFAULT_ROLE_MAP, **{k.lower(): v for k, v in (role_map or {}).items()}}
    bad_targets = sorted({v for v in roles.values() if v not in ROLES})
    if bad_targets:
        fix = f"map each role name to one of {', '.join(ROLES)}"
        raise InputError([Problem("config", None, "sft.role_map", f"unknown {bad_targets}", fix)])
    items: list[Conversation] = []
    problems: list[Problem] = []
    skipped: dict[str, int] = {}
    for line_no, text in _lines(path, field_name):
        if not text.strip():
            continue
        conv, problem = _parse(text, line_no, str(path), roles, fmt, messages_key)
        if problem is None and conv is not None:
            conv.line = line_no
            items.append(conv)
        elif problem is not None and strict:
            problems.append(problem)
        elif problem is not None:
            key = problem.message.split(":")[0]
            skipped[key] = skipped.get(key, 0) + 1
    if problems:
        raise InputError(problems)
    if not items:
        fix = "give a JSONL file with chat messages or instruction/output rows"
        raise InputError([Problem(str(path), None, field_name, "no conversations found", fix)])
    return Conversations(items, str(path), skipped)


def _lines(path: str | Path, field_name: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of a JSONL file, or of the one JSONL member of a .zip."""
    path = Path(path)
    if not path.is_file():
        fix = "check the path (TUNEWISE_DATA_DIR expands in configs)"
        raise InputError([Problem(str(path), None, field_name, "file not found", fix)])
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as zf:
            members = [n for n in zf.namelist() if n.endswith((".jsonl", ".json"))]
            if len(members) != 1:
                fix = "zip exactly one .jsonl file"
                msg = f"expected one .jsonl member, found {len(members)}"
                raise InputError([Problem(str(path), None, field_name, msg, fix)])
            with zf.open(members[0]) as raw:
                yield from enumerate(io.TextIOWrapper(raw, encoding="utf-8"), start=1)
        return
    with path.open(encoding="utf-8") as fh:
        yield from enumerate(fh, start=1)


def _parse(
    text: str,
    line: int,
    file: str,
    roles: dict[str, str],
    fmt: str,
    messages_key: str | None,
) -> tuple[Conversation | None, Problem | None]:
    """One line → a Conversation, or the Problem that names what is wrong with it."""

    def bad(field_name: str, message: str, fix: str) -> tuple[None, Problem]:
        return None, Problem(file, line, field_name, message, fix)

    try:
        row = json.loads(text)
    except json.JSONDecodeError as exc:
        return bad("<json>", f"malformed JSON: {exc.msg} at column {exc.colno}", "fix the line")
    if not isinstance(row, dict):
        return bad("<json>", "malformed JSON: not an object", "one JSON object per line")
    key = messages_key or next((k for k in ("messages", "turns") if k in row), None)
    if fmt == "chat" or (fmt == "auto" and key):
        return _chat(row, key or "messages", roles, bad)
    if fmt == "alpaca" or (fmt == "auto" and "instruction" in row):
        return _alpaca(row, line, bad)
    return bad("<row>", "unknown row shape: no messages, turns or instruction", "see sft.format")


def _chat(row: dict, key: str, roles: dict[str, str], bad) -> Any:
    turns = row.get(key)
    if not isinstance(turns, list) or not turns:
        return bad(key, "no messages: expected a non-empty list", '[{"role", "content"}, ...]')
    messages = []
    for i, turn in enumerate(turns):
        where = f"{key}[{i}]"
        if not isinstance(turn, dict):
            return bad(where, "malformed JSON: a message must be an object", '{"role", "content"}')
        role = roles.get(str(turn.get("role", "")).strip().lower())
        if role is None:
            fix = f"map it with sft.role_map, e.g. {{{turn.get('role')!s}: assistant}}"
            return bad(f"{where}.role", f"unknown role {turn.get('role')!r}", fix)
        content = turn.get("content")
        if not isinstance(content, str) or not content.strip():
            return bad(f"{where}.content", "empty content", "remove the turn or fill it in")
        messages.append({"role": role, "content": content.strip()})
    return _checked(messages, row, key, bad)


def _alpaca(row: dict, line: int, bad) -> Any:
    instruction, source = row.get("instruction"), row
    if isinstance(row.get("instances"), list) and row["instances"]:  # Self-Instruct
        source = row["instances"][0] if isinstance(row["instances"][0], dict) else {}
    extra, output = source.get("input") or "", source.get("output")
    if not isinstance(instruction, str) or not instruction.strip():
        return bad("instruction", "empty content", "give the instruction text")
    if not isinstance(output, str) or not output.strip():
        return bad("output", "no assistant turn: empty output", "give the expected answer")
    user = instruction.strip() + (f"\n\n{extra.strip()}" if str(extra).strip() else "")
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": output.strip()}]
    return _checked(messages, row, "output", bad)


def _checked(messages: list[dict[str, str]], row: dict, key: str, bad) -> Any:
    """Every conversation needs an assistant turn, after at least one user turn."""
    if row.get("status") not in (None, "ok"):  # Alpaca-Libre marks rejected rows
        return bad("status", f"status: {row['status']!r}, not ok", "keep rows with status ok")
    for i, m in enumerate(messages):  # the tokenizer would fail on them mid-run
        if broken := broken_character(m["content"]):
            return bad(f"{key}[{i}].content", f"content has {broken}", FIX_CHARACTER)
    first_user = next((i for i, m in enumerate(messages) if m["role"] == "user"), None)
    first_assistant = next((i for i, m in enumerate(messages) if m["role"] == "assistant"), None)
    if first_assistant is None:
        return bad(key, "no assistant turn", "each conversation needs an assistant reply to learn")
    if first_user is None or first_user > first_assistant:
        return bad(key, "assistant turn before any user turn", "start with a user message")
    return Conversation(messages, 0, str(row.get("id", ""))), None
