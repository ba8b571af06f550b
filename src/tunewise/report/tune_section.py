"""The `tunewise tune` section of report.html: the study's summary and its plots, inlined.

`tunewise tune` (studies/tune/) writes RUN_DIR/tune/summary.json and the images named here; the
report reads them back from the run directory.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

from tunewise.core import rundir

IMAGES = {
    "history.png": "Optimisation history",
    "importances.png": "Parameter importances",
    "parallel.png": "Parallel coordinates",
    "curves.png": "Validation curves (what the pruner saw)",
}


def report_section(run_dir: Path) -> dict[str, Any] | None:
    """The tune section of report.html: summary numbers and the images as data URIs."""
    summary_path = run_dir / rundir.TUNE / "summary.json"
    if not summary_path.is_file():
        return None
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    images = []
    for name in summary.get("plots") or []:
        path = run_dir / rundir.TUNE / name
        if name in IMAGES and path.is_file():
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            images.append({"title": IMAGES[name], "src": "data:image/png;base64," + data})
    best = summary.get("best") or {}
    value = best.get("value")
    return {
        **summary,
        "images": images,
        "best_value": value if isinstance(value, float) and math.isfinite(value) else None,
        "n_trials": sum((summary.get("states") or {}).values()),
    }
