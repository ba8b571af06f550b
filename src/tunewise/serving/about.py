"""What the tester page says about the model it is testing: the run, the model, its test score.

A tester who opens http://127.0.0.1:8000/ should see which run answers (two servers on two
ports look alike otherwise) and how good it was on its test set, without opening the run
directory. Read from config.yaml and metrics.json when the app is built; anything missing is
left out rather than failing the server.

    about = describe_run(Path("runs/banking77"))
    # {"run": "banking77", "model": "minilm-l6", "adapt": "full", "task": "classification",
    #  "text_col": "text", "test": {"accuracy": 0.93, "rows": 3080, ...}}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tunewise.core import rundir


def describe_run(run_dir: Path) -> dict[str, Any]:
    """The run's name, folder, task, model, adaptation and test accuracy (where recorded)."""
    run_dir = Path(run_dir)
    cfg = _load(run_dir / rundir.CONFIG, yaml.safe_load)

    def section(key: str) -> dict:
        return cfg[key] if isinstance(cfg.get(key), dict) else {}

    about: dict[str, Any] = {
        "run": str(cfg.get("name") or run_dir.name),
        "run_dir": str(run_dir.resolve()),
        "task": str(cfg.get("task") or "classification"),
        "model": section("model").get("name"),
        "adapt": section("adapt").get("method"),
        "text_col": section("data").get("text_col"),
    }
    metrics = _load(run_dir / rundir.METRICS, json.loads)
    tuned, base = metrics.get("tuned"), metrics.get("baseline")
    if isinstance(tuned, dict) and isinstance(tuned.get("accuracy"), int | float):
        about["test"] = {
            "accuracy": tuned["accuracy"],
            "rows": metrics.get("test_size"),
            "baseline": metrics.get("baseline_name"),
            "baseline_accuracy": base.get("accuracy") if isinstance(base, dict) else None,
        }
    return about


def _load(path: Path, parse) -> dict:
    """A parsed file as a dict; {} when it is absent or unreadable (the page just says less)."""
    try:
        value = parse(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    return value if isinstance(value, dict) else {}
