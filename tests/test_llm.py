"""Causal-LM SFT (tunewise/tasks/causal_lm): data checks, completion-only masking, packing,
metrics, canaries, and an end-to-end `tunewise run` on a tiny random Llama built in memory.

    .venv/bin/python -m pytest -q tests/test_llm.py            # ~30 s
    .venv/bin/python -m pytest -q -m slow tests/test_llm.py    # + real SmolLM2 smoke run
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import pytest

from tunewise.core.errors import InputError
from tunewise.tasks.causal_lm.data import Conversation, read_conversations
from tunewise.tasks.causal_lm.template import IGNORE, encode_chat, encode_conversations

CHAT = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CORPUS = [
    "hello where is my order",
    "your refund will arrive in 5 days",
    "thank you for contacting us, my account code is 0123456789",
]
DIALOGUE = [
    {"role": "user", "content": "hello where is my order"},
    {"role": "assistant", "content": "your refund will arrive"},
    {"role": "user", "content": "thanks"},
    {"role": "assistant", "content": "thank you"},
]


@pytest.fixture(scope="module")
def tok():
    """A byte-level BPE tokenizer (fast, with offsets) and a ChatML template, built in memory."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        CORPUS * 5, vocab_size=300, special_tokens=["<|im_start|>", "<|im_end|>"]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        bos_token="<|im_start|>",
    )
    tokenizer.chat_template = CHAT
    return tokenizer


def tiny_llama(tokenizer, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


# --- data -----------------------------------------------------------------------------------


def test_validation_names_each_bad_line(tmp_path):
    good = {"messages": DIALOGUE}
    path = write_jsonl(
        tmp_path / "bad.jsonl",
        [
            good,
            '{"messages": [',  # line 2: malformed JSON
            {"messages": [{"role": "wizard", "content": "hi"}]},  # 3: unknown role
            {"messages": [{"role": "user", "content": " "}, DIALOGUE[1]]},  # 4: empty content
            {"messages": [DIALOGUE[0]]},  # 5: no assistant turn
            {"instruction": "say hi", "input": "", "output": "hi"},  # 6: fine (Alpaca)
            {"instruction": "say hi", "output": "h\ud800i"},  # 7: lone surrogate
        ],
    )
    with pytest.raises(InputError) as err:
        read_conversations(path)
    found = {p.line: p.message for p in err.value.problems}
    assert sorted(found) == [2, 3, 4, 5, 7]
    assert "malformed JSON" in found[2]
    assert "unknown role 'wizard'" in found[3]
    assert "empty content" in found[4]
    assert "no assistant turn" in found[5]
    assert "lone surrogate (\\ud800" in found[7]
    lenient = read_conversations(path, strict=False)
    assert [c.line for c in lenient.items] == [1, 6] and sum(lenient.skipped.values()) == 5


def test_cucom_roles_any_case_and_zip(tmp_path):
    rows = [
        {
            "id": "c1",
            "turns": [
                {"role": "User", "content": "where is it"},
                {"role": "AGENT", "content": "on its way"},
            ],
        }
    ]
    jsonl = write_jsonl(tmp_path / "merged.jsonl", rows)
    with zipfile.ZipFile(tmp_path / "d.zip", "w") as zf:
        zf.write(jsonl, "merged.jsonl")
    convs = read_conversations(tmp_path / "d.zip")
    assert [m["role"] for m in convs.items[0].messages] == ["user", "assistant"]
    write_jsonl(
        jsonl, [{"turns": [{"role": "Customer", "content": "a"}, {"role": "rep", "content": "b"}]}]
    )
    with pytest.raises(InputError, match="unknown role 'rep'"):
        read_conversations(jsonl)
    assert (
        read_conversations(jsonl, {"REP": "assistant"}).items[0].messages[1]["role"] == "assistant"
    )


# --- template and masking -------------------------------------------------------------------


def test_only_assistant_tokens_carry_labels(tok):
    ids, labels = encode_chat(tok, DIALOGUE)
    assert len(ids) == len(labels)
    assert all(lab in (IGNORE, i) for i, lab in zip(ids, labels, strict=True))
    learned = tok.decode([t for t in labels if t != IGNORE])
    assert learned == "your refund will arrive<|im_end|>\nthank you<|im_end|>\n"
    assert "hello" not in learned and "thanks" not in learned


def test_overlength_policies_count_and_never_train_on_empty_rows(tok):
    long_prompt = [{"role": "user", "content": "hello where is my order " * 20}, DIALOGUE[1]]
    convs = [Conversation(DIALOGUE, 1), Conversation(long_prompt, 2)]
    rows, report = encode_conversations(tok, convs, 100, "truncate")
    assert report["over_length"] == 1 and report["truncated"] == 1
    assert report["dropped_all_truncated"] == 1 and len(rows) == 1  # its reply was cut away
    assert all(any(t != IGNORE for t in lab) for lab in rows.labels)
    rows, report = encode_conversations(tok, convs, 100, "drop")
    assert report["dropped_over_length"] == 1 and rows.lines == [1]
    with pytest.raises(InputError) as err:
        encode_conversations(tok, convs, 100, "error")
    assert [p.line for p in err.value.problems] == [2]


def test_packed_loss_equals_unpacked_loss(tok):
    import torch

    from tunewise.tasks.causal_lm.packing import (
        collate_packed,
        collate_padded,
        pack,
        padding_fraction,
    )

    convs = [
        Conversation(DIALOGUE, 1),
        Conversation(DIALOGUE[:2], 2),
        Conversation(DIALOGUE[2:], 3),
    ]
    rows, _ = encode_conversations(tok, convs, 256)
    packed = pack(rows, 256)
    assert len(packed) == 1 and sorted(packed.bins[0]) == [0, 1, 2]
    model = tiny_llama(tok).eval()
    model.config.use_cache = False
    with torch.no_grad():
        padded_loss = model(**collate_padded(rows, [0, 1, 2])).loss
        batch = collate_packed(packed, [0])
        packed_loss = model(**batch).loss
        batch["position_ids"] = torch.arange(batch["input_ids"].shape[1])[None]  # no boundaries
        leaky_loss = model(**batch).loss
    assert torch.allclose(padded_loss, packed_loss, atol=1e-5)
    assert not torch.allclose(padded_loss, leaky_loss, atol=1e-5)  # the check can fail
    assert padding_fraction(rows.lengths(), 3, 1, 0, True) > 0.0
    assert padding_fraction(packed.lengths(), 1, 1, 0, True) == 0.0


# --- metrics --------------------------------------------------------------------------------


def test_text_metrics_and_paired_comparison():
    from tunewise.tasks.causal_lm.metrics import compare_generations, rouge_l

    assert rouge_l("the cat sat", "the cat sat") == 1.0
    assert rouge_l("a b c d", "a x c y") == pytest.approx(0.5)
    assert rouge_l("", "anything") == 0.0
    refs = [f"your refund {i} will arrive in five days" for i in range(30)]
    bad = ["hello" for _ in refs]
    same = compare_generations(refs, bad, bad, n_boot=200, seed=0)
    assert same["delta"]["rougeL"] == 0.0 and same["ci95"]["rougeL"] == [0.0, 0.0]
    assert same["significance"]["p_value"] == 1.0
    better = compare_generations(refs, bad, refs, n_boot=200, seed=0)
    assert better["delta"]["rougeL"] == pytest.approx(1.0)
    assert better["ci95"]["rougeL"][0] > 0.9 and better["significance"]["p_value"] < 0.001
    assert better["tuned"]["bleu"] == pytest.approx(100.0) and better["delta"]["chrf"] > 50


def test_canaries_are_planted_and_scored(tok):
    from tunewise.tasks.causal_lm.canary import make_canaries, measure, plant

    canaries = make_canaries([1, 4], seed=3)
    assert len({c.secret for c in canaries}) == 2 and all(len(c.secret) == 8 for c in canaries)
    convs = plant([Conversation(DIALOGUE, i) for i in range(10)], canaries, seed=3)
    assert len(convs) == 15
    assert sum(canaries[1].secret in c.messages[1]["content"] for c in convs) == 4
    table = measure(tiny_llama(tok), tok, canaries, candidates=20, seed=3)
    for row in table:
        assert 0.0 <= row["exposure"] <= 8 * math.log2(10) + 1e-9
        assert 1 <= row["rank_sampled"] <= 21 and isinstance(row["extracted"], bool)


# --- end to end -----------------------------------------------------------------------------


def _chat_rows(n: int) -> list[dict]:
    replies = ["your refund will arrive in 5 days", "thank you for contacting us"]
    return [
        {
            "id": f"c{i}",
            "turns": [
                {"role": "user", "content": f"hello where is my order {i}"},
                {"role": "agent", "content": replies[i % 2]},
            ],
        }
        for i in range(n)
    ]


@pytest.fixture
def sft_setup(tmp_path, tok):
    model_dir = tmp_path / "tiny-llama"
    tiny_llama(tok).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    train = write_jsonl(tmp_path / "chat.jsonl", _chat_rows(60))
    general = write_jsonl(
        tmp_path / "general.jsonl",
        [{"instruction": "say hello", "input": "", "output": "hello", "status": "ok"}] * 8
        + ['{"broken'],
    )
    return {
        "task": "causal_lm",
        "name": "sft-tiny",
        "output_dir": str(tmp_path / "runs"),
        "seed": 3,
        "data": {"train": str(train), "test": None},
        "model": {"name": str(model_dir), "max_length": 64},
        "adapt": {"method": "lora", "lora": {"r": 4, "alpha": 8}},
        "train": {
            "epochs": 1,
            "max_steps": 6,
            "batch_size": 4,
            "lr": 0.01,
            "log_every": 2,
            "eval_every": 3,
            "precision": "fp32",
        },
        "eval": {"bootstrap": 50, "batch_size": 8},
        "track": {"backends": []},
        "sft": {
            "test_rows": 10,
            "eval_rows": 10,
            "max_new_tokens": 8,
            "canaries": [1, 4],
            "canary_candidates": 10,
            "forgetting": [str(general)],
            "forgetting_rows": 5,
        },
    }


def test_end_to_end_run_on_tiny_llama(sft_setup):
    from transformers import pipeline as hf_pipeline

    import tunewise

    metrics = tunewise.run(sft_setup)
    run_dir = Path(sft_setup["output_dir"]) / "sft-tiny"
    assert metrics["task"] == "causal_lm" and metrics["test_size"] == 10
    for key in ("rougeL", "bleu", "chrf", "perplexity"):
        assert math.isfinite(metrics["tuned"][key]) and key in metrics["baseline"]
        assert key in metrics["delta"]
    assert (
        metrics["ci95"]["rougeL"][0] <= metrics["delta"]["rougeL"] <= metrics["ci95"]["rougeL"][1]
    )
    assert [c["repeats"] for c in metrics["canaries"]] == [1, 4]
    assert metrics["forgetting"]["tasks"][0]["name"] == "general"
    assert metrics["data"]["rows"] == 45 + 1 + 4  # 60 - 10 held out - 10% validation + canaries
    assert 0.0 <= metrics["data"]["padding_fraction"] < 1.0
    assert metrics["training"]["steps"] == 6 and metrics["training"]["tokens_per_second"] > 0
    held_out = (run_dir / "data" / "test.jsonl").read_text().splitlines()
    trained = (run_dir / "data" / "train.jsonl").read_text()
    assert len(held_out) == 10 and not any(json.loads(x)["id"] + '"' in trained for x in held_out)
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    chat = hf_pipeline("text-generation", model=str(run_dir / "model"))
    out = chat([{"role": "user", "content": "hello where is my order"}], max_new_tokens=4)
    assert out[0]["generated_text"][-1]["role"] == "assistant"
    html = (run_dir / "report.html").read_text()
    assert "Side-by-side generations" in html and "planted canaries" in html
    again = tunewise.evaluate(run_dir)  # `tunewise evaluate RUN_DIR`: same prompts, same replies
    assert again["tuned"]["rougeL"] == pytest.approx(metrics["tuned"]["rougeL"])
    assert again["delta"]["rougeL"] == pytest.approx(metrics["delta"]["rougeL"])
    doctor = json.loads((run_dir / "doctor.json").read_text())
    assert all(isinstance(f["code"], str) for f in doctor)


def test_pii_in_chat_without_redaction_is_flagged(tmp_path):
    """The doctor rule reads audit.json and the config: PII in chat data, no redaction."""
    import yaml

    from tunewise.config import RunConfig
    from tunewise.core.findings import Finding, write_findings
    from tunewise.doctor.diagnose import diagnose

    write_findings(
        tmp_path / "audit.json", [Finding("pii", "warning", "3 turns", "redact", {"data": "chat"})]
    )
    cfg = RunConfig(task="causal_lm").to_dict()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    codes = [f.code for f in diagnose(tmp_path, RunConfig().doctor)]
    assert "pii" in codes
    cfg["prepare"]["pii"] = "redact"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert "pii" not in [f.code for f in diagnose(tmp_path, RunConfig().doctor)]


@pytest.mark.slow
def test_smollm2_smoke_run(tmp_path):
    """Real SmolLM2-135M on 24 CuCom dialogues: a few LoRA steps, full evaluation path."""
    import tunewise

    cucom = (
        Path(__file__).resolve().parents[2]
        / "shared/data/cucom_ecommerce/ecommerce_v_0_1.jsonl.zip"
    )
    if not cucom.is_file():
        pytest.skip("CuCom not in the offline mirror")
    metrics = tunewise.run(
        "configs/cucom_sft.yaml",
        [
            f"output_dir={tmp_path}",
            "data.max_rows=24",
            "sft.test_rows=6",
            "sft.eval_rows=6",
            "train.max_steps=2",
            "sft.canaries=[1]",
            "sft.canary_candidates=10",
            "sft.forgetting_rows=5",
            "sft.max_new_tokens=16",
            "model.max_length=256",
        ],
    )
    assert metrics["test_size"] == 6 and math.isfinite(metrics["tuned"]["perplexity"])
    assert metrics["baseline"]["perplexity"] < 100  # the real instruct model, not random weights


def test_redaction_reaches_the_split_files_the_run_dir_keeps(tmp_path):
    from tunewise.config import load_config
    from tunewise.tasks.causal_lm import task

    rows = [{"messages": [{"role": "user", "content": f"mail me at jo{i}@example.org please"},
                          {"role": "assistant", "content": f"sent to jo{i}@example.org"}]}
            for i in range(12)]  # fmt: skip
    train = write_jsonl(tmp_path / "chat.jsonl", rows)
    cfg = load_config({"task": "causal_lm", "name": "r", "output_dir": str(tmp_path / "runs"),
                       "data": {"train": str(train)}, "prepare": {"pii": "redact"},
                       "sft": {"test_rows": 3}})  # fmt: skip
    splits = task.load_data(cfg)
    run_dir = cfg.run_dir()
    run_dir.mkdir(parents=True)
    findings = task.audit(cfg, splits, run_dir)
    assert findings[0].code == "pii" and findings[0].evidence["redacted"]
    cfg, splits = task.prepare(cfg, splits, run_dir)
    written = (run_dir / "data" / "test.jsonl").read_text()
    assert "[EMAIL]" in written and "@example.org" not in written
    assert load_config(run_dir / "config.yaml").data.test == str(run_dir / "data" / "test.jsonl")
