"""The bi-encoder: one shared transformer, mean pooling, pair features, a softmax head.

Kept free of Lightning so that inference, export and distillation can load it on their own.
A saved bi-encoder is a folder: ``encoder/`` (Hugging Face weights and tokenizer),
``head.pt`` and ``bi_encoder.json``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from pair_classifier.constants import (
    BI_ENCODER_CONFIG,
    ENCODER_SUBDIR,
    HEAD_FILE,
    SAFETENSORS_FILE,
)
from pair_classifier.errors import ArtifactError, reading_artifact
from pair_classifier.io_utils import read_json, write_json
from pair_classifier.logs import Progress
from pair_classifier.model.encoder import tokenizer_from_pretrained
from pair_classifier.model.encoder_shape import EncoderShape, reshape_to
from pair_classifier.model.features import FEATURE_BLOCKS, pair_features
from pair_classifier.model.pooling import mean_pooling

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BiEncoderSpec:
    """What is needed, besides the weights, to rebuild and use a bi-encoder."""

    class_names: list[str]
    positive_label: str
    max_length: int
    head_hidden: int = 0
    dropout: float = 0.1
    # Set when the encoder was structurally pruned: attention heads and FFN width per layer.
    pruned_heads: list[int] | None = None
    pruned_ffn_channels: list[int] | None = None


def build_head(embedding_dim: int, spec: BiEncoderSpec) -> nn.Module:
    """Softmax head on the pair features: linear, or one hidden layer."""
    in_features = FEATURE_BLOCKS * embedding_dim
    classes = len(spec.class_names)
    if spec.head_hidden <= 0:
        return nn.Sequential(nn.Dropout(spec.dropout), nn.Linear(in_features, classes))
    return nn.Sequential(
        nn.Dropout(spec.dropout),
        nn.Linear(in_features, spec.head_hidden),
        nn.GELU(),
        nn.Dropout(spec.dropout),
        nn.Linear(spec.head_hidden, classes),
    )


def _load_encoder(directory: Path, spec: BiEncoderSpec) -> PreTrainedModel:
    """``from_pretrained``, or for a pruned encoder: build, reshape, then load the weights."""
    if spec.pruned_heads is None:
        with reading_artifact(directory, "a saved transformer encoder"):
            return AutoModel.from_pretrained(directory)
    with reading_artifact(directory, "a saved transformer encoder's config"):
        encoder = AutoModel.from_config(AutoConfig.from_pretrained(directory))
    reshape_to(encoder, EncoderShape(spec.pruned_heads, spec.pruned_ffn_channels))
    with reading_artifact(directory / SAFETENSORS_FILE, "the pruned encoder's weights"):
        encoder.load_state_dict(load_file(directory / SAFETENSORS_FILE))
    return encoder.eval()


class BiEncoder(nn.Module):
    """Encodes each text of a pair with the same encoder and classifies the pair features."""

    def __init__(
        self, encoder: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, spec: BiEncoderSpec
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.spec = spec
        self.head = build_head(encoder.config.hidden_size, spec)

    @property
    def embedding_dim(self) -> int:
        return int(self.encoder.config.hidden_size)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Sentence vectors: the encoder's last hidden states, mean-pooled over real tokens."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return mean_pooling(hidden, attention_mask)

    def embed_with_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Sentence vectors and every block's token states (the embeddings' first), which
        layer-wise distillation compares with the teacher's."""
        output = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True
        )
        return mean_pooling(output.last_hidden_state, attention_mask), output.hidden_states

    def forward(
        self,
        input_ids_a: torch.Tensor,
        attention_mask_a: torch.Tensor,
        input_ids_b: torch.Tensor,
        attention_mask_b: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits of the softmax head and the two sentence vectors."""
        u = self.embed(input_ids_a, attention_mask_a)
        v = self.embed(input_ids_b, attention_mask_b)
        return self.head(pair_features(u, v)), u, v

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenise with padding to the longest text of this batch (dynamic padding)."""
        return self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.spec.max_length,
            return_tensors="pt",
        )

    def length_sorted_batches(
        self, texts: Sequence[str], batch_size: int
    ) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor]]]:
        """The texts' positions and tokens, batch by batch, similar lengths together (less
        padding): for passes over many texts."""
        order = np.argsort([len(text) for text in texts], kind="stable")
        for start in range(0, len(texts), batch_size):
            index = order[start : start + batch_size]
            yield index, self.tokenize([texts[i] for i in index])

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """Sentence vectors for many texts."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        vectors = np.zeros((len(texts), self.embedding_dim), dtype=np.float32)
        batches = math.ceil(len(texts) / batch_size)
        progress = Progress(f"encoding {len(texts)} texts", batches, logger, announce=False)
        for index, batch in self.length_sorted_batches(texts, batch_size):
            embedded = self.embed(batch["input_ids"].to(device), batch["attention_mask"].to(device))
            vectors[index] = embedded.float().cpu().numpy()
            progress.step()
        self.train(was_training)
        return vectors

    def save(self, directory: Path) -> None:
        """Write encoder, tokenizer, head and spec into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(directory / ENCODER_SUBDIR)
        self.tokenizer.save_pretrained(directory / ENCODER_SUBDIR)
        torch.save(self.head.state_dict(), directory / HEAD_FILE)
        write_json(directory / BI_ENCODER_CONFIG, asdict(self.spec))

    @classmethod
    def load(cls, directory: Path) -> BiEncoder:
        """Rebuild a bi-encoder saved by ``save``; it comes back in eval mode on the CPU.

        A missing or unreadable part raises an ``ArtifactError`` naming the file.
        """
        spec_file = directory / BI_ENCODER_CONFIG
        if not spec_file.is_file():
            raise ArtifactError(
                f"{directory}: not a saved bi-encoder ({BI_ENCODER_CONFIG} not found)"
            )
        with reading_artifact(spec_file, "the bi-encoder's spec"):
            spec = BiEncoderSpec(**read_json(spec_file))
        encoder = _load_encoder(directory / ENCODER_SUBDIR, spec)
        with reading_artifact(directory / ENCODER_SUBDIR, "a saved tokenizer"):
            tokenizer = tokenizer_from_pretrained(directory / ENCODER_SUBDIR)
        model = cls(encoder, tokenizer, spec)
        with reading_artifact(directory / HEAD_FILE, "the softmax head's weights"):
            model.head.load_state_dict(torch.load(directory / HEAD_FILE, weights_only=True))
        return model.eval()
