"""The model's classifier: an SVM on the fine-tuned pair features, C chosen on validation.

The SVM's scores are turned into probabilities by Platt scaling (a sigmoid per class) fitted on
the validation split; the predicted label is the most probable class, so label and probability
always agree.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC

from pair_classifier.config import ClassifierConfig
from pair_classifier.constants import (
    CLASSIFIER_CONFIG,
    CLASSIFIER_FILE,
    JOBLIB_ALL_CORES,
    LABEL,
    TEXT_A,
    TEXT_B,
)
from pair_classifier.errors import ArtifactError, DataError, reading_artifact
from pair_classifier.evaluation import absent_classes, score_predictions
from pair_classifier.io_utils import read_json, write_json
from pair_classifier.model.bi_encoder import BiEncoder
from pair_classifier.model.features import pair_features_numpy

logger = logging.getLogger(__name__)


@dataclass
class FittedClassifier:
    """A calibrated SVM and what it needs to be understood later."""

    estimator: CalibratedClassifierCV
    class_names: list[str]
    positive_label: str
    report: dict[str, Any]

    @property
    def svm(self) -> Pipeline:
        """The (scaler +) SVM pipeline inside the calibration wrapper."""
        return self.estimator.calibrated_classifiers_[0].estimator.estimator

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Platt-scaled class probabilities, one row per pair of features."""
        return self.estimator.predict_proba(features)

    def save(self, directory: Path) -> None:
        """Write the calibrated SVM (joblib) and its card (class names, selection report)."""
        directory.mkdir(parents=True, exist_ok=True)
        joblib.dump(self.estimator, directory / CLASSIFIER_FILE)
        write_json(
            directory / CLASSIFIER_CONFIG,
            {
                "class_names": self.class_names,
                "positive_label": self.positive_label,
                "report": self.report,
            },
        )

    @classmethod
    def load(cls, directory: Path) -> FittedClassifier:
        """Read a classifier written by ``save``; a missing or unreadable part raises an
        ``ArtifactError`` naming the file."""
        if not (directory / CLASSIFIER_FILE).is_file():
            raise ArtifactError(
                f"{directory}: not a fitted classifier ({CLASSIFIER_FILE} not found)"
            )
        with reading_artifact(directory / CLASSIFIER_CONFIG, "the classifier's card (JSON)"):
            meta = read_json(directory / CLASSIFIER_CONFIG)
            class_names, positive_label = meta["class_names"], meta["positive_label"]
            report = meta["report"]
        with reading_artifact(directory / CLASSIFIER_FILE, "a fitted scikit-learn classifier"):
            estimator = joblib.load(directory / CLASSIFIER_FILE)
        return cls(estimator, class_names, positive_label, report)


def pair_feature_matrix(model: BiEncoder, frame: pd.DataFrame, batch_size: int) -> np.ndarray:
    """``[u, v, |u-v|, u*v]`` for every pair; each distinct text is encoded once."""
    texts = list(dict.fromkeys(frame[TEXT_A].tolist() + frame[TEXT_B].tolist()))
    vectors = model.encode(texts, batch_size)
    row = {text: i for i, text in enumerate(texts)}
    u = vectors[[row[t] for t in frame[TEXT_A]]]
    v = vectors[[row[t] for t in frame[TEXT_B]]]
    return pair_features_numpy(u, v)


def build_svm(config: ClassifierConfig, c: float, class_weight: str | None, seed: int) -> Pipeline:
    """One grid point: RBF ``SVC`` or ``LinearSVC``, behind a scaler when configured."""
    if config.kind == "linear":
        svm = LinearSVC(C=c, class_weight=class_weight, max_iter=config.max_iter, random_state=seed)
    else:
        svm = SVC(
            C=c,
            kernel="rbf",
            gamma=config.gamma,
            class_weight=class_weight,
            max_iter=config.max_iter,
        )
    return make_pipeline(StandardScaler(), svm) if config.standardize else make_pipeline(svm)


def fit_classifier(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    val_features: np.ndarray,
    val_labels: np.ndarray,
    config: ClassifierConfig,
    class_names: list[str],
    positive_label: str,
    seed: int,
) -> FittedClassifier:
    """Fit one SVM per (C, class weight), keep the best on validation, calibrate it there.

    The grid points are fitted in threads: libsvm and liblinear release the GIL while fitting,
    so the features are shared rather than copied to worker processes.
    """
    positive = class_names.index(positive_label)
    for split, labels in (("train", train_labels), ("val", val_labels)):
        # A class missing here would be unknown to the SVM, its probability columns shifted.
        if missing := absent_classes(labels, class_names):
            raise DataError(f"{split}: no pair of class(es) {missing} to fit the SVM on")
    grid = list(itertools.product(config.c_grid, config.class_weights))
    logger.info(
        "fitting %d %s SVMs (C %s, class weights %s) on %d pairs",
        len(grid),
        config.kind,
        config.c_grid,
        config.class_weights,
        len(train_labels),
    )
    fitted = Parallel(n_jobs=config.threads or JOBLIB_ALL_CORES, prefer="threads")(
        delayed(build_svm(config, c, class_weight, seed).fit)(train_features, train_labels)
        for c, class_weight in grid
    )
    candidates = []
    for (c, class_weight), svm in zip(grid, fitted):
        predicted = svm.predict(val_features)
        scores = score_predictions(val_labels, predicted, None, class_names, positive)
        name = f"C{c}_{class_weight or 'unweighted'}"
        candidates.append((scores[config.selection_metric], name, svm, scores))
        logger.info(
            "%s: validation %s %.4f", name, config.selection_metric, scores[config.selection_metric]
        )
    _, best_name, best_svm, _ = max(candidates, key=lambda candidate: candidate[0])
    calibrated = CalibratedClassifierCV(FrozenEstimator(best_svm), method="sigmoid").fit(
        val_features, val_labels
    )
    probabilities = calibrated.predict_proba(val_features)
    report = {
        "kind": config.kind,
        "selected": best_name,
        "val": score_predictions(
            val_labels, probabilities.argmax(axis=1), probabilities, class_names, positive
        ),
        "grid": {name: scores for _, name, _, scores in candidates},
    }
    return FittedClassifier(calibrated, class_names, positive_label, report)


def predict(classifier: FittedClassifier, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class indices and class probabilities."""
    probabilities = classifier.predict_proba(features)
    return probabilities.argmax(axis=1), probabilities


def labels_of(frame: pd.DataFrame) -> np.ndarray:
    """The label column as class indices (prepare wrote them as integers)."""
    return frame[LABEL].to_numpy()
