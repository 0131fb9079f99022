"""Loading the pretrained transformer: local folder, the team's offline HF cache, or the hub."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from pair_classifier.config import ConfigError, ModelConfig


def _hub_cache_holds(cache_dir: Path, model_id: str) -> bool:
    """Whether a Hugging Face hub cache folder has a snapshot of ``model_id``."""
    return (cache_dir / f"models--{model_id.replace('/', '--')}").is_dir()


def pretrained_source(config: ModelConfig) -> tuple[str, dict[str, Any]]:
    """Where ``from_pretrained`` should look, and with which arguments.

    A local folder wins; a hub id is read offline from ``model.hf_cache`` when that cache holds
    it (the team's shared drive), and downloaded from the hub otherwise.
    """
    if Path(config.pretrained).is_dir():
        return config.pretrained, {}
    if config.hf_cache and _hub_cache_holds(Path(config.hf_cache), config.pretrained):
        return config.pretrained, {"cache_dir": config.hf_cache, "local_files_only": True}
    return config.pretrained, {}


# What transformers records in a tokenizer about how it was loaded, and writes into a saved
# tokenizer_config.json: ``local_files_only`` follows HF_HUB_OFFLINE and the cache in use,
# ``is_local`` whether the source was a folder. Dropped, so saved files depend on the model alone.
LOADING_ONLY_KWARGS = ("local_files_only", "is_local")


def tokenizer_from_pretrained(source: str | Path, **kwargs: Any) -> PreTrainedTokenizerBase:
    """``AutoTokenizer.from_pretrained`` minus the record of how it was loaded."""
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    for name in LOADING_ONLY_KWARGS:
        tokenizer.init_kwargs.pop(name, None)
    return tokenizer


def load_tokenizer(config: ModelConfig) -> PreTrainedTokenizerBase:
    """The pretrained model's tokenizer, from the offline cache when it holds it."""
    source, kwargs = pretrained_source(config)
    return tokenizer_from_pretrained(source, **kwargs)


def load_encoder(config: ModelConfig) -> PreTrainedModel:
    """The pretrained transformer, from the offline cache when it holds it."""
    source, kwargs = pretrained_source(config)
    encoder = AutoModel.from_pretrained(source, **kwargs)
    positions = getattr(encoder.config, "max_position_embeddings", None)
    if positions is not None and config.max_length > positions:
        raise ConfigError(
            f"model.max_length: {config.pretrained} has {positions} positions, "
            f"got {config.max_length}"
        )
    return encoder


def encoder_layers(encoder: PreTrainedModel) -> nn.ModuleList:
    """The transformer blocks of a BERT-like encoder (BERT, MiniLM, RoBERTa share this layout)."""
    return encoder.encoder.layer


def freeze_bottom(encoder: PreTrainedModel, layers: int) -> None:
    """Freeze the embedding module and the ``layers`` lowest transformer blocks.

    Nothing below the lowest trainable block needs a gradient then, so backward stops there:
    each frozen block saves its whole backward pass, not only its weight update.
    """
    if layers <= 0:
        return
    blocks = encoder_layers(encoder)
    if layers >= len(blocks):
        raise ConfigError(
            f"train.freeze_bottom_layers: cannot freeze {layers} of the encoder's {len(blocks)} "
            "blocks: nothing would train"
        )
    encoder.get_input_embeddings().requires_grad_(False)
    encoder.base_model.embeddings.requires_grad_(False)
    for block in blocks[:layers]:
        block.requires_grad_(False)


def token_counter(tokenizer: PreTrainedTokenizerBase) -> Callable[[Sequence[str]], list[int]]:
    """A function giving each text's length in tokens (special tokens included).

    ``verbose=False``: counting a text beyond the model's length is the point here, so the
    tokenizer's "sequence length is longer than ... indexing errors" warning, which names no
    file or line, would only mislead; prepare reports such pairs itself.
    """

    def count(texts: Sequence[str]) -> list[int]:
        encoded = tokenizer(list(texts), truncation=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    return count
