"""bench/sft_vs_trl.py's first step on a tiny model: TRL's SFTTrainer prepares the same tokens and
labels as tunewise and computes the same loss on one packed batch (skipped without trl)."""

from __future__ import annotations

import pytest

from tests.test_llm import CHAT, CORPUS, DIALOGUE, tiny_llama
from tunewise.tasks.causal_lm.data import Conversation

pytest.importorskip("trl")


@pytest.fixture(scope="module")
def chat_tokenizer():
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        CORPUS * 5, vocab_size=300, special_tokens=["<|im_start|>", "<|im_end|>"]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, eos_token="<|im_end|>", pad_token="<|im_end|>"
    )
    tokenizer.chat_template = CHAT
    return tokenizer


def _convs() -> list[Conversation]:
    return [Conversation(DIALOGUE, 1), Conversation(DIALOGUE[:2], 2), Conversation(DIALOGUE, 3)]


def _cfg():
    from bench.sft_vs_trl import CONFIG, SETTINGS

    from tunewise.config import load_config

    return load_config(CONFIG, [*SETTINGS, "train.precision=fp32"])


def test_trl_and_tunewise_agree_on_tokens_labels_and_loss(chat_tokenizer, tmp_path):
    from bench.sft_vs_trl import TOLERANCE, loss_check

    model = tiny_llama(chat_tokenizer)
    check = loss_check(model, chat_tokenizer, _convs(), _cfg(), tmp_path)
    assert check["same_tokens_and_labels"]
    assert check["label_tokens"] == check["trl_label_tokens"] > 0
    assert check["abs_diff"] <= TOLERANCE and check["passed"]


def test_the_check_fails_when_trl_masks_differently(chat_tokenizer, tmp_path, monkeypatch):
    import bench.sft_vs_trl as b

    # the end-of-turn token outside the mask: the model would never learn to stop
    wrong = b.MARKED.replace(
        "{{message['content'] + '<|im_end|>' + '\n'}}{% endgeneration %}",
        "{{message['content']}}{% endgeneration %}{{'<|im_end|>' + '\n'}}",
    )
    assert wrong != b.MARKED
    monkeypatch.setattr(b, "MARKED", wrong)
    check = b.loss_check(tiny_llama(chat_tokenizer), chat_tokenizer, _convs(), _cfg(), tmp_path)
    assert not check["same_tokens_and_labels"] and not check["passed"]
