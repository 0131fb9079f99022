"""The one optimiser every trained model uses (teacher, student, cross-encoder): AdamW with a
learning rate per part, no weight decay on biases and LayerNorm weights, linear warm-up then
linear decay."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

# Parameters that weight decay would only pull towards zero for no regularising gain: biases
# shift, LayerNorm weights scale; shrinking them does not make the function simpler (BERT's rule).
NO_DECAY_SUFFIXES = ("bias", "LayerNorm.weight", "layer_norm.weight")


def parameter_groups(
    parts: list[tuple[nn.Module, float]], weight_decay: float
) -> list[dict[str, Any]]:
    """Two AdamW groups per ``(module, lr)`` part, in order: decayed weights, then the biases
    and LayerNorm weights (decay 0). Frozen parameters are left out."""
    groups = []
    for part, lr in parts:
        named = [(name, p) for name, p in part.named_parameters() if p.requires_grad]
        groups.append(
            {
                "params": [p for name, p in named if not name.endswith(NO_DECAY_SUFFIXES)],
                "lr": lr,
                "weight_decay": weight_decay,
            }
        )
        groups.append(
            {
                "params": [p for name, p in named if name.endswith(NO_DECAY_SUFFIXES)],
                "lr": lr,
                "weight_decay": 0.0,
            }
        )
    return groups


def adamw_with_linear_warmup(
    parts: list[tuple[nn.Module, float]],
    weight_decay: float,
    warmup_fraction: float,
    total_steps: int,
) -> dict[str, Any]:
    """Lightning's optimiser config: AdamW over the parts' groups, stepped warm-up and decay.

    A pretrained encoder and a fresh head need very different learning rates, hence the parts.
    """
    optimizer = torch.optim.AdamW(parameter_groups(parts, weight_decay))
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(warmup_fraction * total_steps), total_steps
    )
    return {
        "optimizer": optimizer,
        "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
    }
