"""tunewise: fine-tune pre-trained language models the careful way, and prove the result.

    import tunewise
    metrics = tunewise.run("configs/banking77.yaml", ["train.epochs=1"])
    print(metrics["tuned"]["accuracy"], metrics["ci95"]["accuracy"])

The names below load on first use, so `import tunewise` (and `tunewise --help`) does not pay for
torch and transformers until a function that needs them is called.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {  # name -> module that defines it
    "InputError": "tunewise.core.errors",
    "RunConfig": "tunewise.config",
    "load_config": "tunewise.config",
    "load_splits": "tunewise.data.validate",
    "prepare": "tunewise.data.curate",
    "adapt": "tunewise.models.adapt",
    "count_parameters": "tunewise.models.adapt",
    "fit": "tunewise.training.loop",
    "train_classifier": "tunewise.training.classifier",
    "audit": "tunewise.pipeline",
    "run": "tunewise.pipeline",
    "train": "tunewise.pipeline",
    "tune": "tunewise.pipeline",
    "evaluate": "tunewise.pipeline",
    "doctor": "tunewise.pipeline",
    "report": "tunewise.pipeline",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'tunewise' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
