"""Pooling token embeddings into one sentence vector."""

import torch

# Floor of a text's token count: an all-padding row pools to zeros instead of 0 / 0.
MIN_TOKEN_COUNT = 1e-9


def mean_pooling(token_embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the token vectors that the attention mask keeps (padding does not count)."""
    mask = attention_mask.unsqueeze(-1).to(token_embeddings.dtype)
    summed = (token_embeddings * mask).sum(dim=1)
    counts = mask.sum(dim=1).clamp(min=MIN_TOKEN_COUNT)
    return summed / counts
