"""The whole scoring path as one torch module, ready for ONNX export.

token ids and masks of both texts -> encoder -> mean pooling -> ``[u, v, |u-v|, u*v]`` ->
SVM scores (scaler folded into the weights) -> Platt-scaled class probabilities.

Both the linear and the RBF SVM become ordinary tensor operations (matrix products, ``exp``),
so ONNX Runtime and TensorRT run the whole graph; no ``ai.onnx.ml`` operators are needed.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC
from torch import nn

from pair_classifier.classifier import FittedClassifier
from pair_classifier.export.interface import ExportError
from pair_classifier.model.bi_encoder import BiEncoder
from pair_classifier.model.features import pair_features


def _tensor(values: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float32))


class SvmScores(nn.Module):
    """SVM decision values of standardised features, as sklearn's ``decision_function``."""

    def __init__(self, classifier: FittedClassifier) -> None:
        super().__init__()
        steps = classifier.svm.steps
        svm = steps[-1][1]
        scaler = steps[0][1] if isinstance(steps[0][1], StandardScaler) else None
        dim = svm.n_features_in_
        mean = scaler.mean_ if scaler is not None else np.zeros(dim)
        scale = scaler.scale_ if scaler is not None else np.ones(dim)
        self.kind = "linear" if isinstance(svm, LinearSVC) else "rbf"
        if self.kind == "linear":
            # (x - mean) / scale @ w.T + b  ==  x @ (w / scale).T + (b - (w / scale) @ mean)
            weight = svm.coef_ / scale
            self.register_buffer("weight", _tensor(weight.T))
            self.register_buffer("bias", _tensor(svm.intercept_ - weight @ mean))
        else:
            if not isinstance(svm, SVC) or len(svm.classes_) != 2:
                raise ExportError(
                    "only a binary RBF SVM can be exported; use classifier=linear_svm"
                )
            self.register_buffer("mean", _tensor(mean))
            self.register_buffer("scale", _tensor(scale))
            self.register_buffer("support", _tensor(svm.support_vectors_))
            self.register_buffer("support_sq", _tensor((svm.support_vectors_**2).sum(axis=1)))
            self.register_buffer("dual", _tensor(svm.dual_coef_.T))
            self.register_buffer("bias", _tensor(svm.intercept_))
            self.gamma = float(svm._gamma)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.kind == "linear":
            return features @ self.weight + self.bias
        x = (features - self.mean) / self.scale
        distances = (x * x).sum(dim=1, keepdim=True) - 2 * x @ self.support.T + self.support_sq
        return torch.exp(-self.gamma * distances) @ self.dual + self.bias


class PlattProbabilities(nn.Module):
    """sklearn's sigmoid calibration: ``p_k = 1 / (1 + exp(a_k s_k + b_k))``, normalised."""

    def __init__(self, classifier: FittedClassifier) -> None:
        super().__init__()
        calibrators = classifier.estimator.calibrated_classifiers_[0].calibrators
        self.register_buffer("a", _tensor([c.a_ for c in calibrators]))
        self.register_buffer("b", _tensor([c.b_ for c in calibrators]))
        self.binary = len(classifier.class_names) == 2

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        probabilities = torch.sigmoid(-(self.a * scores + self.b))
        if self.binary:
            return torch.cat([1 - probabilities, probabilities], dim=1)
        return probabilities / probabilities.sum(dim=1, keepdim=True)


class ScoringModel(nn.Module):
    """Two tokenised texts in, SVM scores and class probabilities out."""

    def __init__(self, bi_encoder: BiEncoder, classifier: FittedClassifier) -> None:
        super().__init__()
        self.bi_encoder = bi_encoder
        self.scores = SvmScores(classifier)
        self.probabilities = PlattProbabilities(classifier)

    def forward(
        self,
        input_ids_a: torch.Tensor,
        attention_mask_a: torch.Tensor,
        input_ids_b: torch.Tensor,
        attention_mask_b: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        u = self.bi_encoder.embed(input_ids_a, attention_mask_a)
        v = self.bi_encoder.embed(input_ids_b, attention_mask_b)
        scores = self.scores(pair_features(u, v))
        return scores, self.probabilities(scores)
