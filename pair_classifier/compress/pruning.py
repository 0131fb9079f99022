"""Structured pruning of a BERT-style encoder: whole layers, attention heads, FFN channels.

Structured means the saved weights really shrink (fewer rows and columns), so the student is
smaller and faster everywhere, not just sparse. Head and channel importance is the first-order
Taylor estimate of Michel et al. (2019): the magnitude of the loss gradient with respect to a
gate multiplying each head's (channel's) output, accumulated over training batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
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


def keep_layers(encoder: PreTrainedModel, keep: list[int]) -> None:
    """Keep only the listed transformer blocks, in the listed order."""
    layers = encoder_layers(encoder)
    if not keep or any(not 0 <= i < len(layers) for i in keep):
        raise ValueError(f"keep_layers {keep}: indices must lie in 0..{len(layers) - 1}")
    encoder.encoder.layer = nn.ModuleList([layers[i] for i in keep])
    for index, layer in enumerate(encoder.encoder.layer):
        layer.attention.self.layer_idx = index
    encoder.config.num_hidden_layers = len(keep)


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


def gate_importance(
    encoder: PreTrainedModel, batches: Iterable[object], loss_of: Callable[[object], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """|dLoss/dgate| per head and per FFN channel, summed over ``batches``.

    Gates (all ones, so the model's output is unchanged) sit on the inputs of each block's
    attention output projection (one per head) and FFN output projection (one per channel).
    """
    shape = current_shape(encoder)
    layers = encoder_layers(encoder)
    head_gates = [torch.ones(h, requires_grad=True) for h in shape.heads]
    ffn_gates = [torch.ones(c, requires_grad=True) for c in shape.ffn_channels]
    handles = []
    for layer, head_gate, ffn_gate in zip(layers, head_gates, ffn_gates):
        handles.append(
            layer.attention.output.dense.register_forward_pre_hook(
                _gated(head_gate, head_gate.numel())
            )
        )
        handles.append(
            layer.output.dense.register_forward_pre_hook(_gated(ffn_gate, ffn_gate.numel()))
        )
    head_scores = [torch.zeros(h) for h in shape.heads]
    ffn_scores = [torch.zeros(c) for c in shape.ffn_channels]
    try:
        for batch in batches:
            loss = loss_of(batch)
            grads = torch.autograd.grad(loss, head_gates + ffn_gates)
            for scores, grad in zip(head_scores + ffn_scores, grads):
                scores += grad.abs()
    finally:
        for handle in handles:
            handle.remove()
    return torch.stack(head_scores), torch.stack(ffn_scores)


def _gated(gate: torch.Tensor, groups: int) -> Callable:
    """A forward pre-hook multiplying the input's last axis, split in ``groups``, by ``gate``."""

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        hidden = inputs[0]
        shape = hidden.shape
        gated = hidden.reshape(*shape[:-1], groups, -1) * gate.to(hidden.dtype).view(groups, 1)
        return (gated.reshape(shape), *inputs[1:])

    return hook


def top_indices(scores: torch.Tensor, keep: int) -> list[int]:
    """Indices of the ``keep`` largest scores."""
    keep = min(keep, scores.numel())
    return sorted(torch.topk(scores, keep).indices.tolist())


def prune_by_importance(
    encoder: PreTrainedModel,
    head_scores: torch.Tensor,
    ffn_scores: torch.Tensor,
    heads_per_layer: int,
    ffn_channels_per_layer: int,
) -> EncoderShape:
    """Keep the most important heads and FFN channels in every block; return the new shape."""
    size = head_size(encoder)
    for layer, heads, channels in zip(encoder_layers(encoder), head_scores, ffn_scores):
        prune_heads(layer, top_indices(heads, heads_per_layer), size)
        prune_ffn(layer, top_indices(channels, ffn_channels_per_layer))
    return current_shape(encoder)
