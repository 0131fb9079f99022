"""Pair features: how two sentence vectors become one input for a classifier."""

import numpy as np
import torch

FEATURE_BLOCKS = 4  # [u, v, |u - v|, u * v]


def pair_features(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``[u, v, |u - v|, u * v]`` (Conneau et al., InferSent), on the last axis."""
    return torch.cat([u, v, (u - v).abs(), u * v], dim=-1)


def pair_features_numpy(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The same features for numpy arrays (classifier fitting and ONNX-free inference)."""
    return np.concatenate([u, v, np.abs(u - v), u * v], axis=-1)
