"""Chat SFT: tunewise beside TRL's SFTTrainer, same model, rows, masking, packing and tokens.

    python bench/sft_vs_trl.py --quick      # 48 dialogues, 20 held-out prompts (a few minutes)
    python bench/sft_vs_trl.py              # 500 dialogues, one epoch, 60 held-out prompts
    python bench/sft_vs_trl.py --tools trl  # one piece; the others come from the cache

SmolLM2-135M-Instruct (`smollm2-135m`, tunewise's loader), LoRA r 8 / alpha 16 / dropout 0.05 on
every linear layer, CuCom with tunewise's split of configs/cucom_sft.yaml (60 dialogues held out,
then a seeded 500, 4% of them for tunewise's validation), 256 tokens a row, loss on assistant
tokens only, packing on, one epoch of the same encoded dialogues each (so the same real tokens),
4 x 2 rows a step, lr 5e-4 cosine with 5% warmup, no weight decay, clipping 1.0, bf16 autocast
where the CPU has it (else fp32 for both). The runs:

- `tunewise`: `tunewise.train(configs/cucom_sft.yaml)` with the settings above (canaries and
  forgetting probes off): first-fit-decreasing packing into rows of 256, a batch of 4 rows.
- `trl`: `SFTTrainer` with `assistant_only_loss=True`, `packing=True` (its default best-fit
  decreasing, which makes batches padding-free: the 4 rows flattened into one with position
  ids), `peft_config` = the same LoRA, and TRL's other defaults (gradient checkpointing on).
  SmolLM2's chat template has no `{% generation %}` markers, which TRL needs for an assistant
  mask, so the template gets them around exactly what tunewise labels (reply + `<|im_end|>\\n`).
- `trl_nogc`: the same with `gradient_checkpointing=False`.

First, the loss check: on 8 training dialogues, the tokens and labels TRL prepares must equal
tunewise's, and on the same weights (LoRA B drawn at random, so the adapters count) TRL's
`compute_loss` on its collated batch must equal tunewise's packed-batch loss within 1e-4 nats,
or the bench stops. tests/test_sft_vs_trl.py runs the same check on a tiny model.

Each run is a fresh subprocess (peak RSS from VmHWM right after training) cached under
`--out/pieces/` (`--fresh` reruns). tokens/s counts real (non-padding) training tokens over
training seconds (tunewise: `fit`'s loop, which ends with one validation pass; TRL:
`train_runtime`). Both trained models are merged and scored by the same tunewise code: mean
NLL of the assistant tokens of the held-out dialogues, and ROUGE-L of greedy 64-token replies.
Prints one JSON object as its last line and writes bench/results/sft_vs_trl[_quick].json, with
`speedup_vs_trl` (tunewise tokens/s / TRL's) and `loss_delta_vs_trl` (tunewise held-out loss -
TRL's), against `trl` and against `trl_nogc`.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "cucom_sft.yaml"
TOOLS = ("tunewise", "trl", "trl_nogc")
SETTINGS = [
    "adapt.lora.r=8",
    "adapt.lora.alpha=16",
    "adapt.lora.dropout=0.05",
    "model.max_length=256",
    "train.max_steps=null",
    "train.epochs=1",
    "train.batch_size=4",
    "train.grad_accum=2",
    "train.early_stopping=null",
    "train.eval_every=1000000",  # one validation pass, at the end
    "sft.canaries=[]",
    "sft.forgetting=[]",
    "track.backends=[]",
]
FULL = ["data.max_rows=500", "sft.eval_rows=60"]
QUICK = ["data.max_rows=48", "sft.eval_rows=20"]
TOLERANCE = 1e-4  # nats: |tunewise loss - TRL loss| on one batch, fp32
MMAP_THRESHOLD = "131072"  # as bench/predict_speed.py
# The ChatML turn of SmolLM2's template (and of tests/test_llm.py's), and the same turn with
# TRL's generation markers around what tunewise labels for an assistant turn.
TURN = "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
MARKED = (
    "{% if message['role'] == 'assistant' %}{{'<|im_start|>assistant\n'}}{% generation %}"
    "{{message['content'] + '<|im_end|>' + '\n'}}{% endgeneration %}{% else %}"
    + TURN
    + "{% endif %}"
)


def peak_rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return round(kb / 1024, 1)


def marked_template(template: str) -> str:
    """A ChatML template with `{% generation %}` around each assistant reply and its end."""
    if TURN not in template:
        raise SystemExit("not the ChatML template this bench knows how to mark for TRL")
    return template.replace(TURN, MARKED)


def trl_trainer(model, tokenizer, convs, cfg, out: Path, **overrides: Any):
    """SFTTrainer as a TRL user sets it up for these settings (TRL's defaults otherwise)."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from tunewise.core.device import uses_bf16

    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.chat_template = marked_template(tokenizer.chat_template)
    t, lora = cfg.train, cfg.adapt.lora
    args = SFTConfig(
        output_dir=str(out),
        per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        num_train_epochs=t.epochs,
        learning_rate=t.lr,
        lr_scheduler_type=t.schedule,
        weight_decay=t.weight_decay,
        max_grad_norm=t.clip_grad_norm or 0.0,
        max_length=cfg.model.max_length,
        packing=True,
        assistant_only_loss=True,
        bf16=uses_bf16(t.precision, model),
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        logging_steps=t.log_every,
        seed=cfg.seed,
        **overrides,
    )
    peft_config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    data = Dataset.from_dict({"messages": [c.messages for c in convs]})
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=data,
        processing_class=tokenizer,
        peft_config=peft_config,
    )


def trl_examples(dataset) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """TRL's packed rows split back into examples: (input ids, labels), first label masked as
    its padding-free collator masks it."""
    out = []
    for row in dataset:
        start = 0
        for n in row["seq_lengths"]:
            ids, labels = row["input_ids"][start : start + n], row["labels"][start : start + n]
            out.append((tuple(ids), tuple([-100, *labels[1:]])))
            start += n
    return out


def loss_check(model, tokenizer, convs, cfg, out: Path, seed: int = 0) -> dict:
    """Same tokens, labels and loss from TRL and tunewise on one batch of `convs`."""
    import torch

    from tunewise.tasks.causal_lm.packing import collate_packed, pack
    from tunewise.tasks.causal_lm.template import encode_conversations

    max_len = cfg.model.max_length
    trainer = trl_trainer(model, tokenizer, convs, cfg, out, gradient_checkpointing=False)
    rows, _ = encode_conversations(tokenizer, convs, max_len, "truncate")
    ours = sorted(zip(map(tuple, rows.input_ids), map(tuple, rows.labels), strict=True))
    theirs = sorted(trl_examples(trainer.train_dataset))
    same_tokens = ours == theirs
    peft_model = trainer.model
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # adapters that do something, so the check covers them
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    peft_model.eval()  # no dropout: both see the same function
    examples = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    trl_batch = trainer.data_collator(examples)
    packed = pack(rows, max_len)
    tw_batch = collate_packed(packed, list(range(len(packed))))
    with torch.no_grad():
        trl_loss = float(trainer.compute_loss(peft_model, dict(trl_batch)))
        tw_loss = float(peft_model(**tw_batch, use_cache=False).loss)
    label_tokens = int((tw_batch["labels"] != -100).sum())
    return {
        "dialogues": len(convs),
        "label_tokens": label_tokens,
        "trl_label_tokens": int((trl_batch["labels"] != -100).sum()),
        "same_tokens_and_labels": same_tokens,
        "tunewise_loss": tw_loss,
        "trl_loss": trl_loss,
        "abs_diff": abs(tw_loss - trl_loss),
        "tolerance": TOLERANCE,
        "passed": same_tokens and abs(tw_loss - trl_loss) <= TOLERANCE,
    }


def score(model, tokenizer, test, cfg) -> dict:
    """Held-out assistant-token loss and ROUGE-L of greedy replies, tunewise's code for both."""
    from tunewise.tasks.causal_lm.infer import generate, token_nll
    from tunewise.tasks.causal_lm.metrics import rouge_l
    from tunewise.tasks.causal_lm.scoring import eval_prompts
    from tunewise.tasks.causal_lm.template import encode_conversations

    model.eval()
    s, limit = cfg.sft, cfg.model.max_length - cfg.sft.max_new_tokens
    rows, _ = encode_conversations(tokenizer, test, cfg.model.max_length, "truncate", "test")
    total, count = token_nll(model, rows, 4)
    prompts = eval_prompts(tokenizer, test[: s.eval_rows], s.eval_turn, limit, cfg.seed)
    replies = generate(model, tokenizer, [p["ids"] for p in prompts], s.max_new_tokens, 16)
    rouge = [rouge_l(r, p["reference"]) for r, p in zip(replies, prompts, strict=True)]
    return {
        "heldout_loss": round(total / count, 4),
        "heldout_label_tokens": count,
        "rougeL": round(sum(rouge) / len(rouge), 4),
        "prompts": len(prompts),
    }


def setup(overrides: list[str], with_model: bool = True):
    """The config, tunewise's split of the dialogues, the tokenizer and (optionally) the model."""
    from tunewise.config import load_config
    from tunewise.tasks.causal_lm.load import load_causal_lm, resolve_causal_lm
    from tunewise.tasks.causal_lm.task import load_sft_splits

    cfg = load_config(CONFIG, overrides)
    if with_model:
        tokenizer, model = load_causal_lm(cfg.model.name)
    else:  # tunewise.train loads its own; one copy in the process keeps its peak RSS honest
        from transformers import AutoTokenizer

        tokenizer, model = AutoTokenizer.from_pretrained(resolve_causal_lm(cfg.model.name)), None
        if tokenizer.pad_token_id is None:  # as load_causal_lm does
            tokenizer.pad_token = tokenizer.eos_token
    return cfg, load_sft_splits(cfg), tokenizer, model


def run_tunewise(overrides: list[str], out: Path) -> dict:
    from transformers import AutoModelForCausalLM

    import tunewise

    cfg, splits, tokenizer, _ = setup(overrides, with_model=False)
    started = time.perf_counter()
    run_dir = Path(tunewise.train(CONFIG, [*overrides, f"output_dir={out}", "name=tunewise"]))
    wall = time.perf_counter() - started
    peak = peak_rss_mb()
    summary = json.loads((run_dir / "training.json").read_text())
    t = summary["training"]
    model = AutoModelForCausalLM.from_pretrained(run_dir / "model", use_safetensors=True)
    return {
        "train_tokens": summary["data"]["tokens"],
        "train_label_tokens": summary["data"]["label_tokens"],
        "steps": t["steps"],
        "train_seconds": t["seconds"],
        "tokens_per_second": t["tokens_per_second"],
        "wall_seconds": round(wall, 1),
        "peak_rss_mb": peak,
        "precision": t["precision"],
        **score(model, tokenizer, splits["test"], cfg),
    }


def run_trl(overrides: list[str], out: Path, gradient_checkpointing: bool | None) -> dict:
    cfg, splits, tokenizer, model = setup(overrides)
    extra = {} if gradient_checkpointing is None else {"gradient_checkpointing": False}
    started = time.perf_counter()
    trainer = trl_trainer(model, tokenizer, splits["train"], cfg, out, **extra)
    step_rows = cfg.train.batch_size * cfg.train.grad_accum
    steps = math.ceil(len(trainer.train_dataset) / step_rows) * cfg.train.epochs
    trainer.args.warmup_steps = round(cfg.train.warmup_ratio * steps)  # tunewise's rounding
    tokens = sum(len(x) for x in trainer.train_dataset["input_ids"])
    labels = sum(sum(t != -100 for t in x) for x in trainer.train_dataset["labels"])
    result = trainer.train()
    wall = time.perf_counter() - started
    peak = peak_rss_mb()
    seconds = result.metrics["train_runtime"]
    merged = trainer.model.merge_and_unload()
    return {
        "train_tokens": tokens,
        "train_label_tokens": labels,
        "steps": result.global_step,
        "train_seconds": round(seconds, 2),
        "tokens_per_second": round(tokens / seconds, 1),
        "wall_seconds": round(wall, 1),
        "peak_rss_mb": peak,
        "precision": "bf16" if trainer.args.bf16 else "fp32",
        "gradient_checkpointing": trainer.args.gradient_checkpointing,
        **score(merged, tokenizer, splits["test"], cfg),
    }


def run_check(overrides: list[str], out: Path) -> dict:
    cfg, splits, tokenizer, model = setup(overrides)
    return loss_check(model, tokenizer, splits["train"][:8], cfg, out)


def worker(tool: str, args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    overrides = [*SETTINGS, *(QUICK if args.quick else FULL)]
    out = args.out / "runs" / f"{tool}{'-quick' if args.quick else ''}"
    if tool == "check":
        row = run_check(overrides, out)
    elif tool == "tunewise":
        row = run_tunewise(overrides, out)
    else:
        row = run_trl(overrides, out, False if tool == "trl_nogc" else None)
    Path(args.result).write_text(json.dumps({"tool": tool, **row}, indent=1))


def piece(tool: str, args) -> tuple[dict, bool]:
    tag = "-quick" if args.quick else ""
    result = args.out / "pieces" / f"{tool}{tag}.json"
    if result.exists() and not args.fresh:
        return json.loads(result.read_text()), False
    for sub in ("pieces", "logs"):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    log = args.out / "logs" / f"{tool}{tag}.log"
    cmd = [sys.executable, __file__, "--worker", tool, "--result", str(result)]
    cmd += ["--out", str(args.out), "--threads", str(args.threads)]
    cmd += ["--quick"] if args.quick else []
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD}
    env.update(OMP_NUM_THREADS=str(args.threads), PYTHONPATH=str(ROOT / "src"))
    env.setdefault("TUNEWISE_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    with open(log, "w", encoding="utf-8") as f:
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{tool} failed (exit {done.returncode}); see {log}")
    return json.loads(result.read_text()), True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="48 dialogues, 20 prompts")
    p.add_argument("--tools", default=",".join(TOOLS))
    p.add_argument("--threads", type=int, default=2, help="torch threads per run")
    p.add_argument("--out", type=Path, default=Path("/tmp/tunewise-sft-vs-trl"))
    p.add_argument("--fresh", action="store_true", help="rerun pieces that are cached")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args.worker, args)
        return
    check, new = piece("check", args)
    print(f"loss check: {json.dumps(check)}{'' if new else ' (cached)'}", flush=True)
    if not check["passed"]:
        raise SystemExit("tunewise and TRL disagree on the loss of one batch: nothing to compare")
    rows = {}
    for tool in args.tools.split(","):
        started = time.perf_counter()
        rows[tool], new = piece(tool, args)
        r = rows[tool]
        print(
            f"{tool}: {r['tokens_per_second']:.1f} tokens/s ({r['train_tokens']} tokens, "
            f"{r['steps']} steps, {r['train_seconds']:.0f} s), peak RSS {r['peak_rss_mb']:.0f} MB"
            f", held-out loss {r['heldout_loss']:.4f}, ROUGE-L {r['rougeL']:.4f}"
            + (f" ({time.perf_counter() - started:.0f} s)" if new else " (cached)"),
            flush=True,
        )
    result: dict[str, Any] = {
        "bench": "sft_vs_trl",
        "quick": args.quick,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch threads {args.threads}, load average {os.getloadavg()[0]:.1f} at the end",
        "settings": [*SETTINGS, *(QUICK if args.quick else FULL)],
        "loss_check": check,
        "runs": rows,
    }
    tw = rows.get("tunewise")
    for peer, suffix in (("trl", ""), ("trl_nogc", "_nogc")):
        if tw and peer in rows:
            r = rows[peer]
            result[f"speedup_vs_trl{suffix}"] = round(
                tw["tokens_per_second"] / r["tokens_per_second"], 3
            )
            result[f"loss_delta_vs_trl{suffix}"] = round(tw["heldout_loss"] - r["heldout_loss"], 4)
            result[f"rss_ratio_vs_trl{suffix}"] = round(tw["peak_rss_mb"] / r["peak_rss_mb"], 3)
            result[f"same_tokens_as_trl{suffix}"] = tw["train_tokens"] == r["train_tokens"]
    out = ROOT / "bench" / "results" / f"sft_vs_trl{'_quick' if args.quick else ''}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
