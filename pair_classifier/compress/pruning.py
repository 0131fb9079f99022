"""Choosing what to prune from a BERT-style encoder: whole layers, attention heads, FFN channels.

Structured means the saved weights really shrink (fewer rows and columns), so the student is
smaller and faster everywhere, not just sparse. The cutting itself lives in
``pair_classifier.model.encoder_shape``, since loading a pruned encoder needs it too; this module
chooses what to cut. Head and channel importance is the first-order Taylor estimate of Michel
et al. (2019): the magnitude of the loss gradient with respect to a gate multiplying each head's
(channel's) output, accumulated over training batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn
from transformers import PreTrainedModel

from pair_classifier.model.encoder import encoder_layers
from pair_classifier.model.encoder_shape import (
    EncoderShape,
    current_shape,
    head_size,
    prune_ffn,
    prune_heads,
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
