"""A finished run directory on the tiny BERT and the toy data, for select/refine/export tests.

`pipeline.train` writes config.yaml and model/ in about a second; tests that need no training
use it as is (the tiny model barely learns in 4 steps, which is all select and export need).
"""

from __future__ import annotations

from pathlib import Path


def toy_config(tmp_path: Path, model_dir: Path, train: Path, test: Path, **train_cfg) -> dict:
    return {
        "name": "toy",
        "output_dir": str(tmp_path / "runs"),
        "seed": 13,
        "data": {"train": str(train), "test": str(test)},
        "model": {"name": str(model_dir), "max_length": 16},
        "train": {
            "epochs": 1,
            "batch_size": 16,
            "lr": 1e-2,
            "precision": "fp32",
            "early_stopping": None,
            "log_every": 2,
            **train_cfg,
        },
        "eval": {"bootstrap": 50, "forgetting": []},
        "audit": {"label_noise": False},
        "track": {"backends": []},
    }


def trained_run(tmp_path: Path, model_dir: Path, train: Path, test: Path, **train_cfg) -> Path:
    from tunewise.pipeline import train as train_run

    return train_run(toy_config(tmp_path, model_dir, train, test, **train_cfg))
