"""The SVM on pair features: C selection on validation, calibrated probabilities, persistence."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from helpers import composed

from pair_classifier.classifier import FittedClassifier, fit_classifier, predict
from pair_classifier.config import ClassifierConfig
from pair_classifier.errors import DataError

CLASSES = ["not_paraphrase", "paraphrase"]


def _blobs(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(count) < 0.65).astype(int)
    features = rng.normal(size=(count, 16)) + labels[:, None] * 1.5
    return features, labels


def _fit(kind: str = "linear") -> FittedClassifier:
    config = composed("classifier", ClassifierConfig, f"classifier={kind}_svm", c_grid=[0.001, 1.0])
    (x, y), (vx, vy) = _blobs(200, 0), _blobs(80, 1)
    return fit_classifier(x, y, vx, vy, config, CLASSES, "paraphrase", seed=0)


def test_selects_c_on_validation_and_separates_classes() -> None:
    classifier = _fit()
    assert classifier.report["selected"] in classifier.report["grid"]
    assert set(classifier.report["grid"]) == {
        "C0.001_unweighted",
        "C0.001_balanced",
        "C1.0_unweighted",
        "C1.0_balanced",
    }
    assert classifier.report["val"]["accuracy"] > 0.9
    labels, probabilities = predict(classifier, _blobs(50, 2)[0])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert np.array_equal(labels, probabilities.argmax(axis=1))


def test_rbf_option() -> None:
    assert _fit("rbf").report["kind"] == "rbf"


def test_save_and_load(tmp_path: Path) -> None:
    classifier = _fit()
    classifier.save(tmp_path)
    loaded = FittedClassifier.load(tmp_path)
    x = _blobs(20, 3)[0]
    np.testing.assert_array_equal(loaded.predict_proba(x), classifier.predict_proba(x))
    assert loaded.class_names == CLASSES and loaded.report == classifier.report


def test_grid_fitted_in_threads_matches_one_at_a_time() -> None:
    (x, y), (vx, vy) = _blobs(200, 0), _blobs(80, 1)
    reports = [
        fit_classifier(
            x,
            y,
            vx,
            vy,
            composed("classifier", ClassifierConfig, "classifier=rbf_svm", threads=threads),
            CLASSES,
            "paraphrase",
            seed=0,
        ).report
        for threads in (1, 2)
    ]
    assert reports[0] == reports[1]


def test_a_class_without_pairs_is_refused_not_silently_dropped() -> None:
    """Fitted without a class, the calibrated SVM has a probability column fewer, and every
    column after the missing class would be read as the wrong class."""
    (x, y), (vx, vy) = _blobs(200, 0), _blobs(80, 1)
    three = [*CLASSES, "unrelated"]
    composed_svm = composed("classifier", ClassifierConfig, c_grid=[1.0])
    with pytest.raises(DataError, match=r"train: no pair of class\(es\) \['unrelated'\]"):
        fit_classifier(x, y, vx, vy, composed_svm, three, "paraphrase", seed=0)
    with pytest.raises(DataError, match=r"val: no pair of class\(es\) \['paraphrase'\]"):
        fit_classifier(x, y, vx, 0 * vy, composed_svm, CLASSES, "paraphrase", 0)


def test_the_grid_logs_what_it_fits_and_each_point_s_score(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="pair_classifier.classifier"):
        classifier = _fit()
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0].startswith("fitting 4 linear SVMs (C [0.001, 1.0], class weights")
    scored = {message.split(":")[0] for message in messages[1:]}
    assert scored == set(classifier.report["grid"])
