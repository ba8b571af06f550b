"""Training speed and memory against the Hugging Face Trainer, side by side in one invocation.

Same model (MiniLM-L6), data (BANKING77 train, tunewise's seeded 90/10 split), hyperparameters
(lr 3e-4, batch 32, max length 64, 6% warmup, linear decay, weight decay 0.01, clip 1.0,
seed 13) and number of optimizer steps for every run:

  A  transformers.Trainer, its defaults (DataCollatorWithPadding, fp32, random sampler)
  B  Trainer at its best on CPU (bf16=True, use_cpu=True, group_by_length, pre-tokenised)
  C  `tunewise train` with the shipped recipe (configs/banking77.yaml: bf16 autocast, length
     grouping, fused AdamW, streamed validation, LP-FT head, embeddings + 3 layers frozen,
     R-Drop, which runs every batch twice above the frozen layers)
  CN C without R-Drop (train.rdrop=0): one pass per batch, as A and B do
  CT `tunewise train` training every weight from a random head, one pass per batch (no
     R-Drop), as A and B do
  CE CT with the token embeddings frozen (adapt.freeze_token_embeddings)
  CP CT with train.packing=true and a [CLS] head (not run by default: packing was slower)
  CF C with train.precision=fp32 (not run by default: separates bf16's effect)
  CC CE compiled by torch.compile (inductor, dynamic shapes) through Accelerate's TorchDynamo
     plugin, which `tunewise train` takes from ACCELERATE_DYNAMO_BACKEND (not run by default)

Interpolation with the start is off in every tunewise run: it picks its mix on the validation
rows this bench scores. Each run is a fresh subprocess (honest peak RSS); runs are interleaved
A, B, C, CN, CT, CE per repeat.
samples/s is steady state: from the end of step 1 to the end of the last step, so one-off
set-up is excluded alike for all. Validation accuracy: the final model of each run scored by the
same fp32 code on the same validation rows. MFU: (6 x non-embedding params x real tokens +
12 x layers x hidden x sum of squared lengths) / step time, over a bf16 matmul's FLOP/s
measured in the same process. The headline MFU is CE's: the formula assumes every
non-embedding weight trains, which C's frozen layers do not (its MFU would be overstated).

    .venv/bin/python bench/train_speed.py --quick   # 120 steps per run (about 10 min, 2 cores)
    .venv/bin/python bench/train_speed.py           # one epoch (282 steps) per run

Prints one JSON object as its last line and writes it to bench/results/train_speed[_quick].json.
On a CUDA machine every run trains on the GPU (B drops `use_cpu`), step ends wait for the GPU,
and the MFU denominator is an 8192 x 8192 bf16 matmul on the GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("TUNEWISE_DATA_DIR", str(ROOT.parent / "shared" / "data"))

RUNS = ("A", "B", "C", "CN", "CT", "CE")
# C is the shipped recipe (configs/banking77.yaml), CN the same without R-Drop; CT trains every
# weight from a random head like A and B; CE is CT with the token embeddings frozen.
# Interpolation with the start picks its mix on the validation rows this bench scores, so it is
# off here for every run.
FULL = ["adapt.method=full", "adapt.head_init=random", "train.rdrop=0"]  # one pass, like A, B
NO_SELF_SCORING = ["train.interpolate_start=false"]
QUICK_STEPS = 120
SEED = int(os.environ.get("TRAIN_SPEED_SEED", "13"))  # the worker's --seed


def matmul_flops(size: int = 2048, seconds: float = 1.0) -> float:
    """Best bf16 matmul FLOP/s of three timed rounds (the denominator of MFU), on the GPU when
    there is one (8192 x 8192 there: 2048 would not fill it)."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    size = 8192 if device == "cuda" else size
    a = torch.randn(size, size, dtype=torch.bfloat16, device=device)
    b = torch.randn(size, size, dtype=torch.bfloat16, device=device)
    for _ in range(2):
        a @ b
    best = 0.0
    for _ in range(3):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 3:
            a @ b
            n += 1
        _sync()
        best = max(best, 2 * size**3 * n / (time.perf_counter() - t0))
    return best


def _sync() -> None:
    """Wait for queued GPU work, so a clock reading means the work is done (no-op on CPU)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


class Tokens:
    """Counts real tokens, processed token slots and the sum of squared example lengths."""

    def __init__(self):
        self.real = self.slots = self.sq = self.batches = 0

    def add(self, real_mask, lengths) -> None:
        self.real += int(real_mask.sum())
        self.slots += real_mask.numel()
        self.sq += int((lengths.long() ** 2).sum())
        self.batches += 1


class StepClock:
    """End time of every optimizer step (steady state = first end to last end)."""

    def __init__(self):
        self.first_begin: float | None = None
        self.ends: list[float] = []

    def on_step_begin(self, *args, **kwargs) -> None:
        if self.first_begin is None:
            self.first_begin = time.perf_counter()

    def on_step_end(self, *args, **kwargs) -> None:
        _sync()
        self.ends.append(time.perf_counter())

    def steady(self, rows_per_step: int) -> tuple[float, float]:
        seconds = self.ends[-1] - self.ends[0]
        return (len(self.ends) - 1) * rows_per_step / max(seconds, 1e-9), seconds


def _setup(steps: int):
    from tunewise.config import load_config
    from tunewise.data.validate import load_splits

    out = tempfile.mkdtemp(prefix="train_speed_")
    cfg = load_config(
        ROOT / "configs" / "banking77.yaml",
        [f"train.max_steps={steps}", f"output_dir={out}", "name=speed", f"seed={SEED}"],
    )
    return cfg, load_splits(cfg.data, cfg.seed), out


def _nonembedding_params(model) -> int:
    emb = sum(p.numel() for p in model.base_model.embeddings.parameters())
    return sum(p.numel() for p in model.parameters()) - emb


def _val_accuracy(model, cfg, splits, tokenizer) -> float:
    from tunewise.data.encode import encode
    from tunewise.evaluation.stream import stream_scores

    val = encode(
        tokenizer, splits.validation.texts, splits.ids(splits.validation), cfg.model.max_length
    )
    return stream_scores(model.float(), val, len(splits.labels), 128, bf16=False)["accuracy"]


def run_trainer(kind: str, steps: int) -> dict:
    """A or B: the Hugging Face Trainer on the same rows, step count and hyperparameters."""
    import torch
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments

    from tunewise.models.load import load_classifier, load_tokenizer

    cfg, splits, out = _setup(steps)
    tok = load_tokenizer(cfg.model.name)
    enc = tok(list(splits.train.texts), truncation=True, max_length=cfg.model.max_length)
    ds = Dataset.from_dict({**enc, "labels": splits.ids(splits.train)})
    torch.manual_seed(SEED)
    model = load_classifier(cfg.model.name, splits.labels)
    tokens, clock, pad = Tokens(), StepClock(), DataCollatorWithPadding(tok)

    def collate(features):
        batch = pad(features)
        tokens.add(batch["attention_mask"], batch["attention_mask"].sum(1))
        return batch

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            clock.on_step_end()

    on_cpu = not torch.cuda.is_available()  # on a GPU machine, B trains on the GPU
    tuned = {"bf16": True, "use_cpu": on_cpu, "train_sampling_strategy": "group_by_length"}
    args = TrainingArguments(
        output_dir=out,
        per_device_train_batch_size=cfg.train.batch_size,
        learning_rate=cfg.train.lr,
        weight_decay=cfg.train.weight_decay,
        warmup_steps=round(cfg.train.warmup_ratio * steps),
        lr_scheduler_type="linear",
        max_steps=steps,
        max_grad_norm=cfg.train.clip_grad_norm,
        seed=SEED,
        logging_strategy="no",
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        **(tuned if kind == "B" else {}),
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=ds, data_collator=collate, callbacks=[Clock()]
    )
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    return _summary(
        kind, clock, tokens, model, cfg, splits, tok, wall, "bf16" if kind == "B" else "fp32"
    )


def run_tunewise(kind: str, steps: int) -> dict:
    """C (defaults), CP (packing on), CF (fp32): `tunewise.train`, instrumented from outside."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from tunewise import pipeline
    from tunewise.models.load import load_tokenizer
    from tunewise.training import packing

    cfg, _, out = _setup(steps)
    overrides = (
        NO_SELF_SCORING
        + {
            "C": [],
            "CN": ["train.rdrop=0"],
            "CP": ["train.packing=true", "model.pooling=cls", *FULL],
            "CF": ["train.precision=fp32"],  # C in fp32
            "CT": FULL,
            "CE": [*FULL, "adapt.freeze_token_embeddings=true"],
            "CC": [*FULL, "adapt.freeze_token_embeddings=true"],
        }[kind]
    )
    if kind == "CC":  # read by accelerate.Accelerator, which `fit` builds
        os.environ.update(ACCELERATE_DYNAMO_BACKEND="INDUCTOR", ACCELERATE_DYNAMO_USE_DYNAMIC="1")
    tokens, clock = Tokens(), StepClock()
    plain, packed, fit = packing.collate, packing.pack_collate, pipeline.fit

    def count_plain(data, rows):
        batch = plain(data, rows)
        tokens.add(batch["attention_mask"], batch["attention_mask"].sum(1))
        return batch

    def count_packed(data, rows):
        batch = packed(data, rows)
        real = batch["seq_ids"] >= 0
        tokens.add(real, torch.tensor([len(data.input_ids[i]) for i in rows]))
        return batch

    def timed_fit(*args, callbacks=(), **kwargs):
        return fit(*args, callbacks=[*callbacks, clock], **kwargs)

    packing.collate, packing.pack_collate, pipeline.fit = count_plain, count_packed, timed_fit
    t0 = time.perf_counter()
    run_dir = pipeline.train(cfg, overrides)
    wall = time.perf_counter() - t0
    cfg, splits, _ = _setup(steps)
    tok = load_tokenizer(cfg.model.name)
    model = AutoModelForSequenceClassification.from_pretrained(run_dir / "model")
    precision = "fp32" if kind == "CF" else "auto (bf16)"
    out = _summary(kind, clock, tokens, model, cfg, splits, tok, wall, precision)
    if kind == "CC":
        from torch._dynamo.utils import counters

        out["compiled_graphs"] = int(counters["stats"]["unique_graphs"])
        out["first_step_seconds"] = round(clock.ends[0] - clock.first_begin, 2)
        half = len(clock.ends) // 2  # after the recompiles for new shapes have settled
        late = clock.ends[-1] - clock.ends[half]
        out["second_half_samples_per_s"] = round(
            (len(clock.ends) - 1 - half) * cfg.train.batch_size / late, 2
        )
    return out


def _summary(kind, clock, tokens, model, cfg, splits, tok, wall, precision) -> dict:
    samples_per_s, seconds = clock.steady(cfg.train.batch_size)
    layers, hidden = model.config.num_hidden_layers, model.config.hidden_size
    steps = len(clock.ends)
    share = (steps - 1) / steps  # the steady window holds all steps but the first
    flops = share * (
        6 * _nonembedding_params(model) * tokens.real + 12 * layers * hidden * tokens.sq
    )
    peak = matmul_flops()
    return {
        "run": kind,
        "steps": steps,
        "precision": precision,
        "samples_per_s": round(samples_per_s, 2),
        "steady_seconds": round(seconds, 2),
        "wall_seconds": round(wall, 2),
        "real_token_fraction": round(tokens.real / max(tokens.slots, 1), 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "val_accuracy": round(_val_accuracy(model, cfg, splits, tok), 4),
        "model_tflops": round(flops / seconds / 1e12, 4),
        "matmul_tflops": round(peak / 1e12, 4),
        "mfu_vs_matmul": round(flops / seconds / peak, 4),
    }


def worker(kind: str, steps: int, result: Path) -> None:
    from transformers.utils import logging

    logging.set_verbosity_error()
    fn = run_trainer if kind in ("A", "B") else run_tunewise
    result.write_text(json.dumps(fn(kind, steps)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_STEPS} steps per run")
    parser.add_argument("--steps", type=int, help="optimizer steps per run (default: one epoch)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--runs", default=",".join(RUNS), help="any of A,B,C,CN,CT,CE,CP,CF,CC")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    steps = args.steps or (QUICK_STEPS if args.quick else 282)
    if args.worker:
        return worker(args.worker, steps, args.result)
    runs: dict[str, list[dict]] = {}
    for rep in range(args.repeats):
        for kind in args.runs.split(","):
            result = Path(tempfile.mkstemp(suffix=".json")[1])
            cmd = [sys.executable, __file__, "--worker", kind, "--steps", str(steps),
                   "--result", str(result)]  # fmt: skip
            env = {**os.environ, "TRAIN_SPEED_SEED": str(args.seed)}
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
            runs.setdefault(kind, []).append(json.loads(result.read_text()))
            print(f"repeat {rep} {kind}: {runs[kind][-1]}", flush=True)
    print(json.dumps(summarise(runs, steps, args)))


def _mean(rows: list[dict], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows)


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def summarise(runs: dict[str, list[dict]], steps: int, args) -> dict:
    """The headline ratios (C over A and B), the runs, the machine; written to bench/results."""
    import torch

    m = {k: {key: round(_mean(v, key), 4) for key in v[0] if key not in ("run", "precision")}
         for k, v in runs.items()}  # fmt: skip
    out: dict = {"steps": steps, "repeats": args.repeats, "batch_size": 32, "seed": args.seed}
    if "A" in m and "C" in m:
        out["speedup_vs_trainer"] = round(m["C"]["samples_per_s"] / m["A"]["samples_per_s"], 3)
        out["accuracy_delta"] = round(100 * (m["C"]["val_accuracy"] - m["A"]["val_accuracy"]), 2)
    if "B" in m and "C" in m:
        out["speedup_vs_trainer_tuned"] = round(
            m["C"]["samples_per_s"] / m["B"]["samples_per_s"], 3
        )
        out["accuracy_delta_vs_tuned"] = round(
            100 * (m["C"]["val_accuracy"] - m["B"]["val_accuracy"]), 2
        )
    if "C" in m:
        out["real_token_fraction"] = m["C"]["real_token_fraction"]
    if "CE" in m:  # 6 x params counts the backward of every layer: exact only when all train
        out["mfu_vs_matmul"] = m["CE"]["mfu_vs_matmul"]
    for kind in ("CN", "CT", "CE"):  # one pass per batch; CT and CE train every weight
        if kind in m and "B" in m:
            out[f"{kind}_speedup_vs_trainer_tuned"] = round(
                m[kind]["samples_per_s"] / m["B"]["samples_per_s"], 3
            )
            out[f"{kind}_accuracy_delta"] = (
                round(100 * (m[kind]["val_accuracy"] - m["A"]["val_accuracy"]), 2)
                if "A" in m
                else None
            )
            if kind != "CN":  # CN's frozen layers would overstate it, as C's do
                out[f"{kind}_mfu_vs_matmul"] = m[kind]["mfu_vs_matmul"]
    if "CP" in m and "CT" in m:
        out["packing_accuracy_delta"] = round(
            100 * (m["CP"]["val_accuracy"] - m["CT"]["val_accuracy"]), 2
        )
        out["packing_speedup"] = round(m["CP"]["samples_per_s"] / m["CT"]["samples_per_s"], 3)
    out["runs"] = m
    out["machine"] = f"{_cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}"
    if torch.cuda.is_available():
        out["machine"] += f", {torch.cuda.get_device_name()}"
    out["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    name = "train_speed_quick" if args.quick else "train_speed"
    if args.runs != ",".join(RUNS) or args.seed != 13:
        name += "_" + args.runs.replace(",", "") + f"_seed{args.seed}"
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / f"{name}.json").write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
