"""The optimiser both distillation-time models use: AdamW, one learning rate per part."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup


def adamw_with_linear_warmup(
    parts: list[tuple[nn.Module, float]],
    weight_decay: float,
    warmup_fraction: float,
    total_steps: int,
) -> dict[str, Any]:
    """Lightning's optimiser config: AdamW over ``(module, lr)`` parts, linear warm-up and decay.

    A pretrained encoder and a fresh head need very different learning rates, hence the parts.
    """
    groups = [
        {"params": [p for p in part.parameters() if p.requires_grad], "lr": lr}
        for part, lr in parts
    ]
    optimizer = torch.optim.AdamW(groups, weight_decay=weight_decay)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(warmup_fraction * total_steps), total_steps
    )
    return {
        "optimizer": optimizer,
        "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
    }
