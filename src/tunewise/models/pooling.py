"""Mean pooling for BERT-family classifiers: the head reads the average of the token vectors.

Why: sentence encoders such as the default all-MiniLM-L6-v2 were trained so that the masked mean
of their token vectors is the sentence embedding; their `[CLS]` vector and pooler were not. A
head on `[CLS]` starts from weaker features (BANKING77, 10 rows per intent: a frozen `[CLS]`
head scores far below the linear probe on mean-pooled embeddings), so `model.pooling: mean` lets
the classifier read the mean instead. `auto` (the default) uses the pooling the encoder was
trained with: mean when its sentence-transformers `1_Pooling/config.json` says so, else `[CLS]`.

A run saves this model as a standard `BertForSequenceClassification` with one extra layer that
computes the same mean (models/portable.py), so `transformers.pipeline("text-classification",
model="runs/<run>/model")` loads it without tunewise; tunewise reads it back as this class
(`models.load.load_trained_classifier`). Runs saved before that have model_type
`tunewise_mean_bert`: importing tunewise registers it with the Auto classes so they still load.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    BertConfig,
    BertModel,
    BertPreTrainedModel,
)
from transformers.modeling_outputs import SequenceClassifierOutput


class MeanPoolingBertConfig(BertConfig):
    model_type = "tunewise_mean_bert"


class MeanPoolingBertForSequenceClassification(BertPreTrainedModel):
    """BERT with a linear head on the masked mean of the last layer (no `[CLS]` pooler)."""

    config_class = MeanPoolingBertConfig

    def __init__(self, config: MeanPoolingBertConfig):
        super().__init__(config)
        self.num_labels: int = config.num_labels  # type: ignore[assignment]  # always set here
        self.bert = BertModel(config, add_pooling_layer=False)
        rate = config.classifier_dropout
        self.dropout = nn.Dropout(config.hidden_dropout_prob if rate is None else rate)
        self.classifier = nn.Linear(config.hidden_size, self.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        hidden = self.bert(
            input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, **kwargs
        ).last_hidden_state
        logits = self.classifier(self.dropout(mean_pool(hidden, attention_mask)))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.float(), labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """The mean of each row's token vectors over its real (unmasked) tokens. `hidden` may hold the
    batch twice over (R-Drop doubles it inside the encoder, `training/rdrop.py`)."""
    if attention_mask is None:
        return hidden.mean(1)
    if len(attention_mask) < len(hidden):
        attention_mask = attention_mask.repeat(len(hidden) // len(attention_mask), 1)
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


def trained_pooling(folder: str) -> str:
    """`mean` or `cls`: what a sentence-transformers folder says it pooled with (else `cls`)."""
    path = Path(folder) / "1_Pooling" / "config.json"
    if not path.is_file():
        return "cls"
    return "mean" if json.loads(path.read_text()).get("pooling_mode_mean_tokens") else "cls"


def register() -> None:
    """Make the Auto classes (and so `transformers.pipeline`) load `tunewise_mean_bert`."""
    AutoConfig.register(MeanPoolingBertConfig.model_type, MeanPoolingBertConfig, exist_ok=True)
    AutoModelForSequenceClassification.register(
        MeanPoolingBertConfig, MeanPoolingBertForSequenceClassification, exist_ok=True
    )


register()
