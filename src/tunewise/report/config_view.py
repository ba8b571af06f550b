"""The report's "Resolved config": only the sections that shaped this run.

config.yaml holds every section of the schema, so a classification run also lists `sft:` and a
run without a study lists `tune:`; a reader cannot tell which settings mattered. The report shows
the ones that apply to the run's task and names the rest; config.yaml keeps them all, so the run
stays reproducible from it.

    view = config_view(run_dir / "config.yaml", studied=(run_dir / "tune").is_dir())
    view["text"], view["hidden"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

# top-level sections a task never reads (tasks/<task>: which stages it runs)
UNUSED = {
    "classification": {"sft"},
    "ranking": {"sft", "audit", "prepare"},  # pairs are trained on as read, with no audit yet
    "causal_lm": set(),
}
PAIR_TASKS = {"ranking"}  # the only task that reads data.pair_cols


def config_view(path: Path, studied: bool = False) -> dict[str, Any] | None:
    """{"text": block YAML of what applies, "hidden": ["sft", ...], "raw": the parsed dict};
    None when there is no config.yaml. A file that does not parse is shown as it is."""
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError:
        return {"text": text, "hidden": [], "raw": {}}
    if not isinstance(raw, dict):
        return {"text": text, "hidden": [], "raw": {}}
    shown, hidden = applicable(raw, studied)
    dumped = yaml.safe_dump(shown, sort_keys=False, allow_unicode=True)
    return {"text": dumped, "hidden": hidden, "raw": raw}


def applicable(raw: dict, studied: bool) -> tuple[dict, list[str]]:
    """The config without what this run never read, and the dotted names of what was left out."""
    task = str(raw.get("task") or "classification")
    drop = set(UNUSED.get(task, set()))
    if not studied:
        drop.add("tune")  # read only by `tunewise tune`
    shown = {k: v for k, v in raw.items() if k not in drop}
    hidden = [k for k in raw if k in drop]
    data = shown.get("data")
    if isinstance(data, dict) and "pair_cols" in data and task not in PAIR_TASKS:
        shown["data"] = {k: v for k, v in data.items() if k != "pair_cols"}
        hidden.append("data.pair_cols")
    adapt = shown.get("adapt")
    if isinstance(adapt, dict) and "lora" in adapt and adapt.get("method") != "lora":
        shown["adapt"] = {k: v for k, v in adapt.items() if k != "lora"}
        hidden.append(f"adapt.lora (adapt.method is {adapt.get('method')})")
    return shown, hidden
