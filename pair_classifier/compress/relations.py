"""Self-attention relation distillation (MiniLMv2, Wang et al. 2021).

A block's query, key and value projections are each split into ``heads`` relation heads; a
relation is the softmax over keys of the scaled dot products of one projection with itself
(query-query, key-key, value-value), so it is a tokens x tokens matrix whatever the width of the
projection. The student's last block learns the teacher's relations by KL divergence: this
transfers how the teacher's attention relates tokens to each other, which matching sentence
vectors and token states alone does not ask of a student with fewer, narrower heads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from pair_classifier.config import ConfigError

PROJECTIONS = ("query", "key", "value")


@contextmanager
def captured_projections(block: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """While open, the dict holds the query, key and value projections (batch, tokens, width)
    of the last forward pass through ``block``'s self-attention."""
    captured: dict[str, torch.Tensor] = {}
    attention = block.attention.self

    def keep(name: str) -> Callable[[nn.Module, object, torch.Tensor], None]:
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            captured[name] = output

        return hook

    handles = [getattr(attention, name).register_forward_hook(keep(name)) for name in PROJECTIONS]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def check_relation_layer(layer: int, blocks: int) -> None:
    """``distill.relation_layer`` must name one of the teacher's ``blocks`` blocks."""
    if not -blocks <= layer < blocks:
        raise ConfigError(
            f"distill.relation_layer {layer}: the teacher's blocks are 0..{blocks - 1} "
            f"(or -{blocks}..-1, counting from the last)"
        )


def check_relation_width(width: int, heads: int, whose: str) -> None:
    """Fail before any training when ``heads`` cannot split a ``width`` evenly."""
    if width % heads:
        raise ConfigError(
            f"distill.relation_heads {heads} must divide the width of the {whose}'s query/key/"
            f"value projections ({width})"
        )


def check_relation_heads(block: nn.Module, heads: int, whose: str) -> None:
    """``check_relation_width`` for ``block``'s self-attention."""
    check_relation_width(block.attention.self.query.out_features, heads, whose)


def stacked_projections(captured: dict[str, torch.Tensor]) -> torch.Tensor:
    """(3, batch, tokens, width): query, key and value, in that order."""
    return torch.stack([captured[name] for name in PROJECTIONS])


def log_relations(
    projections: torch.Tensor, attention_mask: torch.Tensor, heads: int
) -> torch.Tensor:
    """Log self-relations (3, batch, heads, tokens, tokens) of stacked projections; padded keys
    get no weight."""
    kinds, batch, tokens, width = projections.shape
    if width % heads:
        raise ValueError(f"relation heads {heads} do not divide the projection width {width}")
    size = width // heads
    # In fp32 even under mixed precision: unscaled value-value products overflow half precision.
    with torch.autocast(projections.device.type, enabled=False):
        split = projections.float().view(kinds, batch, tokens, heads, size).transpose(2, 3)
        scores = split @ split.transpose(-1, -2) / math.sqrt(size)
        padded_keys = attention_mask[None, :, None, None, :] == 0
        scores = scores.masked_fill(padded_keys, torch.finfo(scores.dtype).min)
        return F.log_softmax(scores, dim=-1)


def relation_kl(
    student: torch.Tensor, teacher: torch.Tensor, attention_mask: torch.Tensor, heads: int
) -> torch.Tensor:
    """KL(teacher || student) of the three self-relations, averaged over relation kinds, heads
    and real query tokens; ``student`` and ``teacher`` are stacked projections of one batch
    (their widths may differ)."""
    student_log = log_relations(student, attention_mask, heads)
    teacher_log = log_relations(teacher, attention_mask, heads)
    divergence = F.kl_div(student_log, teacher_log, log_target=True, reduction="none")
    keys = attention_mask[None, :, None, None, :].float()
    per_query = (divergence * keys).sum(dim=-1)  # (3, batch, heads, tokens)
    queries = attention_mask[None, :, None, :].float()
    return (per_query * queries).sum() / (queries.sum() * per_query.shape[0] * heads)
