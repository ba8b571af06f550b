"""The saved classifier in a clean environment: `transformers.pipeline` with tunewise refused
against tunewise's own reading of the same run (models/portable.py), on BANKING77 test texts.

The pipeline runs in `python -I` with an import hook that raises on `tunewise`, exactly as the
model card shows (`truncation=True, max_length=<model.max_length>`); tunewise scores the same
texts with `load_trained_classifier` (the native mean-pooled model) in fp32. Reported: label
agreement, the largest probability difference, the largest raw-logit difference and how much of
it is a per-row shift (which softmax ignores).

    .venv/bin/python bench/portable_model.py --run runs/banking77 --quick   # 500 texts
    .venv/bin/python bench/portable_model.py --run runs/banking77           # all 3,080

A run saved before the portable graph (model_type tunewise_mean_bert) is converted first into a
temporary copy. Prints one JSON object as its last line and writes it to
bench/results/portable_model[_quick].json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DATA = Path(os.environ.get("TUNEWISE_DATA_DIR", ROOT.parent / "shared" / "data")) / "banking77"

CLEAN = """
import importlib.abc, json, sys
class NoTunewise(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tunewise":
            raise ImportError("tunewise is not installed here")
sys.meta_path.insert(0, NoTunewise())
from transformers import pipeline
folder, texts_file, max_length = sys.argv[1], sys.argv[2], int(sys.argv[3])
clf = pipeline("text-classification", model=folder)
texts = json.load(open(texts_file))
out = clf(texts, truncation=True, max_length=max_length, top_k=None, batch_size=64)
print(json.dumps([{o["label"]: o["score"] for o in row} for row in out]))
"""


def _portable_copy(model_dir: Path, tmp: Path) -> Path:
    """model/ itself when portable, else a portable copy of an older native save."""
    from transformers import AutoTokenizer

    from tunewise.models.load import load_trained_classifier, save_classifier
    from tunewise.models.portable import is_portable

    if is_portable(model_dir):
        return model_dir
    out = tmp / "model"
    save_classifier(load_trained_classifier(model_dir), out)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--run", default="runs/banking77", help="a finished BANKING77 run directory")
    p.add_argument("--quick", action="store_true", help="the first 500 test texts")
    args = p.parse_args()
    import torch
    import yaml
    from transformers import AutoTokenizer

    from tunewise.models.load import load_trained_classifier

    run = Path(args.run)
    max_length = int(yaml.safe_load((run / "config.yaml").read_text())["model"]["max_length"])
    with open(DATA / "test.csv", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)][: 500 if args.quick else None]
    tmp = Path(tempfile.mkdtemp())
    try:
        folder = _portable_copy(run / "model", tmp)
        (tmp / "texts.json").write_text(json.dumps(texts))
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-I", "-c", CLEAN, str(folder), str(tmp / "texts.json"),
             str(max_length)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        pipeline_s = time.perf_counter() - started
        clean = json.loads(done.stdout.strip().splitlines()[-1])
        model = load_trained_classifier(folder)
        tok = AutoTokenizer.from_pretrained(folder)
        labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        with torch.no_grad():
            batch = tok(texts, padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")  # fmt: skip
            logits = torch.cat([model(**{k: v[i : i + 256] for k, v in batch.items()}).logits
                                for i in range(0, len(texts), 256)])  # fmt: skip
        probs = logits.softmax(-1)
        got = torch.tensor([[row[name] for name in labels] for row in clean])
        std = _plain_logits(folder, batch)
        shift = (std - logits) - (std - logits).mean(1, keepdim=True)
        result = {
            "bench": "portable_model",
            "run": str(run),
            "texts": len(texts),
            "labels_equal": int((got.argmax(-1) == probs.argmax(-1)).sum()),
            "max_abs_prob_diff": float((got - probs).abs().max()),
            "max_abs_logit_diff": float((std - logits).abs().max()),
            "max_abs_logit_diff_without_row_shift": float(shift.abs().max()),
            "max_abs_logit": float(logits.abs().max()),
            "pipeline_seconds": round(pipeline_s, 1),
            "tunewise_importable_in_clean_process": False,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = ROOT / "bench" / "results" / f"portable_model{'_quick' if args.quick else ''}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


def _plain_logits(folder: Path, batch: dict):
    """The standard graph's raw logits (what a user calling the model directly gets)."""
    import torch
    from transformers import BertForSequenceClassification

    plain = BertForSequenceClassification.from_pretrained(folder).eval()
    n = len(batch["input_ids"])
    with torch.no_grad():
        return torch.cat([plain(**{k: v[i : i + 256] for k, v in batch.items()}).logits
                          for i in range(0, n, 256)])  # fmt: skip


if __name__ == "__main__":
    main()
