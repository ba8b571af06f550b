"""tunewise: fine-tune pre-trained language models the careful way, and prove the result.

import tunewise
metrics = tunewise.run("configs/banking77.yaml", ["train.epochs=1"])
print(metrics["tuned"]["accuracy"], metrics["ci95"]["accuracy"])
"""

from tunewise.config import RunConfig, load_config
from tunewise.curation import audit, prepare
from tunewise.data.validate import load_splits
from tunewise.errors import InputError
from tunewise.models import pooling as _pooling  # noqa: F401  registers tunewise_mean_bert
from tunewise.models.adapt import adapt, count_parameters
from tunewise.pipeline import baseline, evaluate, report, run, train
from tunewise.training.loop import fit
from tunewise.tuning.search import tune

__all__ = [
    "InputError",
    "RunConfig",
    "adapt",
    "audit",
    "baseline",
    "count_parameters",
    "evaluate",
    "fit",
    "load_config",
    "load_splits",
    "prepare",
    "report",
    "run",
    "train",
    "tune",
]
__version__ = "0.1.0"
