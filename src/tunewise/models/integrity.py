"""A saved model/ folder proves it is the one training wrote: `manifest.json` holds the sha256
and size of every file, and a loaded model must have finite weights.

Why: a flipped byte, a truncated copy or NaN weights would otherwise be served (answers with
`"score": null`) or crash an evaluation minutes in. Checked by the one loader of model/
(`models.load.load_trained_classifier`), so evaluate, serve, export, select and refine all refuse
such a folder with exit 2 and the file named:

    write_manifest(run_dir / "model")      # after training saved it
    verify_manifest(run_dir / "model")     # before loading: InputError on a mismatch
    check_finite(model, run_dir / "model") # after loading: InputError naming the tensor
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunewise.core.console import console
from tunewise.core.errors import InputError, Problem
from tunewise.core.files import sha256_file

MANIFEST = "manifest.json"
UNLISTED = ("README.md",)  # the model card, rewritten by each evaluation; text, never loaded
_warned: set[Path] = set()  # folders already warned about (old runs have no manifest)


def write_manifest(folder: Path) -> Path:
    """List every file of `folder` (but the card) with its sha256 and size."""
    skip = (MANIFEST, *UNLISTED)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name not in skip)
    doc = {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in files}
    path = folder / MANIFEST
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return path


def verify_manifest(folder: Path) -> None:
    """Refuse a folder whose files differ from its manifest; warn once when it has none."""
    path = folder / MANIFEST
    if not path.is_file():
        if folder.resolve() not in _warned:
            _warned.add(folder.resolve())
            console.log(f"[yellow]warning:[/] {folder} has no {MANIFEST} (an older tunewise "
                        "saved it): its files cannot be checked")  # fmt: skip
        return
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        wanted = {name: (int(w["bytes"]), str(w["sha256"])) for name, w in manifest.items()}
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise _refuse(path, "manifest", f"unreadable ({exc})") from None
    for name, (size, digest) in wanted.items():
        file = folder / name
        if not file.is_file():
            raise _refuse(file, "file", "missing, though the manifest lists it")
        if file.stat().st_size != size:
            message = f"{file.stat().st_size:,} bytes, the manifest says {size:,} (truncated?)"
            raise _refuse(file, "bytes", message)
        if sha256_file(file) != digest:
            raise _refuse(file, "sha256", "content differs from what training wrote")


def check_finite(model: Any, folder: Path) -> None:
    """Refuse a model with NaN or infinite weights, naming the first such tensor."""
    import torch

    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise _refuse(folder / "model.safetensors", name, f"{bad:,} NaN or infinite values")


def _refuse(file: Path, field: str, message: str) -> InputError:
    fix = "retrain the run (tunewise run CONFIG), or restore model/ from a backup or checkpoint"
    return InputError([Problem(str(file), None, field, message, fix)])
