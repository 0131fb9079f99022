"""The shape of a structurally pruned BERT-style encoder: attention heads and FFN width per block.

Structured pruning really shrinks the weights (fewer rows and columns), so a pruned encoder no
longer matches its config. Loading one needs only this module: build the encoder from its
config, cut it to the recorded shape, then load the weights. Choosing *what* to prune (by
importance) is the distill stage's job, done before the student is saved.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel

from pair_classifier.model.encoder import encoder_layers


@dataclass(frozen=True)
class EncoderShape:
    """What differs from the pretrained config after pruning: per layer, heads and FFN width."""

    heads: list[int]
    ffn_channels: list[int]


def head_size(encoder: PreTrainedModel) -> int:
    """Width of one attention head; pruning keeps it and drops whole heads."""
    return encoder.config.hidden_size // encoder.config.num_attention_heads


def current_shape(encoder: PreTrainedModel) -> EncoderShape:
    """Heads and FFN channels each layer has now (after any pruning)."""
    size = head_size(encoder)
    layers = encoder_layers(encoder)
    return EncoderShape(
        heads=[layer.attention.self.query.out_features // size for layer in layers],
        ffn_channels=[layer.intermediate.dense.out_features for layer in layers],
    )


def _slice_linear(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    """A smaller copy of ``linear`` keeping rows (dim 0: outputs) or columns (dim 1: inputs)."""
    weight = linear.weight.detach().index_select(dim, index).clone()
    bias = linear.bias.detach().clone() if linear.bias is not None else None
    if dim == 0 and bias is not None:
        bias = bias.index_select(0, index).clone()
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    new.weight = nn.Parameter(weight)
    if bias is not None:
        new.bias = nn.Parameter(bias)
    return new


def prune_heads(layer: nn.Module, keep: list[int], size: int) -> None:
    """Keep the listed attention heads of one block (query/key/value rows, output columns)."""
    index = torch.tensor([h * size + i for h in sorted(keep) for i in range(size)])
    attention = layer.attention.self
    for name in ("query", "key", "value"):
        setattr(attention, name, _slice_linear(getattr(attention, name), index, 0))
    layer.attention.output.dense = _slice_linear(layer.attention.output.dense, index, 1)
    attention.num_attention_heads = len(keep)
    attention.all_head_size = len(keep) * size


def prune_ffn(layer: nn.Module, keep: list[int]) -> None:
    """Keep the listed FFN channels of one block (intermediate rows, output columns)."""
    index = torch.tensor(sorted(keep))
    layer.intermediate.dense = _slice_linear(layer.intermediate.dense, index, 0)
    layer.output.dense = _slice_linear(layer.output.dense, index, 1)


def reshape_to(encoder: PreTrainedModel, shape: EncoderShape) -> None:
    """Give a freshly built encoder the pruned shape, so saved pruned weights load into it."""
    size = head_size(encoder)
    for layer, heads, channels in zip(encoder_layers(encoder), shape.heads, shape.ffn_channels):
        prune_heads(layer, list(range(heads)), size)
        prune_ffn(layer, list(range(channels)))
