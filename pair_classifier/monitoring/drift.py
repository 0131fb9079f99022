"""`pair-classifier drift`: a window of served traffic against the training data, check by
check (``checks``), written as drift.json and drift.html (``report``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from pair_classifier.constants import TEXT_A, TEXT_B
from pair_classifier.export.onnx_predictor import OnnxPairPredictor
from pair_classifier.monitoring import checks
from pair_classifier.monitoring.settings import DriftConfig
from pair_classifier.monitoring.vectors import EncoderProbe
from pair_classifier.monitoring.window import (
    TokenCounter,
    Window,
    log_window,
    pairs_window,
    reference_frame,
    sample,
)
from pair_classifier.serving.traffic_log import is_traffic_log

logger = logging.getLogger(__name__)

NEEDS_TEXTS = "the traffic log holds no texts (turn on serving.traffic_log.log_texts)"


@dataclass(frozen=True)
class DriftInputs:
    """What is compared: the window's source and the reference files, and the graphs."""

    window: Path
    reference: Path
    prediction_reference: Path
    graph: Path  # the served graph: predictions of a file of pairs and of the reference
    encoder_graph: Path  # the graph whose sentence vectors are read (fp32 export)
    since: datetime | None = None
    until: datetime | None = None
    text_a: str = TEXT_A
    text_b: str = TEXT_B


@dataclass(frozen=True)
class DriftResult:
    inputs: DriftInputs
    window_pairs: int
    class_names: list[str]
    checks: list[checks.CheckResult]
    figures_data: dict  # what the report plots

    @property
    def drift(self) -> bool:
        return any(check.verdict == checks.DRIFT for check in self.checks)


def _shares(counter: TokenCounter, ids: list[np.ndarray], seen: set[int] | None) -> float:
    tokens = np.concatenate(ids) if ids else np.empty(0, dtype=np.int64)
    if not len(tokens):
        return 0.0
    if seen is None:
        return float(np.mean(tokens == counter.unk_id)) if counter.unk_id is not None else 0.0
    return float(np.mean(~np.isin(tokens, np.fromiter(seen, dtype=np.int64))))


def expected_unseen_share(ids: list[np.ndarray], folds: int, seed: int) -> float:
    """The share of tokens of new pairs from the reference's own distribution that the
    reference never showed: each fold's tokens against the other folds' (a slight
    over-estimate, the others being a part of the whole)."""
    fold_of = np.random.default_rng(seed).integers(0, folds, len(ids))
    shares = []
    for fold in range(folds):
        known = {int(t) for i, row in enumerate(ids) if fold_of[i] != fold for t in row}
        held = [row for i, row in enumerate(ids) if fold_of[i] == fold]
        tokens = np.concatenate(held) if held else np.empty(0, dtype=np.int64)
        if len(tokens):
            shares.append(float(np.mean(~np.isin(tokens, np.fromiter(known, dtype=np.int64)))))
    return float(np.mean(shares))


def vocabulary_checks(
    counter: TokenCounter, reference: Window, window: Window, config: DriftConfig
) -> list[checks.CheckResult]:
    if window.texts is None:
        return [checks.skipped(name, NEEDS_TEXTS) for name in ("unknown_tokens", "unseen_tokens")]
    reference_ids, window_ids = counter.ids(reference.texts), counter.ids(window.texts)
    seen = {int(token) for row in reference_ids for token in row}
    return [
        checks.share_check(
            "unknown_tokens",
            _shares(counter, window_ids, None),
            _shares(counter, reference_ids, None),
            config.unk_margin,
            unk_token_id=counter.unk_id,
        ),
        checks.share_check(
            "unseen_tokens",
            _shares(counter, window_ids, seen),
            expected_unseen_share(reference_ids, config.vocabulary_folds, config.seed),
            config.unseen_margin,
            reference_vocabulary=len(seen),
        ),
    ]


def _vectors(probe: EncoderProbe, texts: object) -> np.ndarray:
    u, v, _ = probe.run(texts)
    return np.stack([u, v], axis=1)


def run_drift(inputs: DriftInputs, config: DriftConfig) -> DriftResult:
    """Every check of the window against the reference; nothing written."""
    probe = EncoderProbe(inputs.encoder_graph, config.batch_size, config.threads)
    same_graph = inputs.graph.resolve() == inputs.encoder_graph.resolve()
    scorer = (
        probe if same_graph else OnnxPairPredictor(inputs.graph, config.batch_size, config.threads)
    )
    class_names = scorer.class_names
    counter = TokenCounter(probe.tokenize.tokenizer)
    if is_traffic_log(inputs.window):
        window = log_window(
            inputs.window, class_names, config.max_pairs, inputs.since, inputs.until
        )
    else:
        window = pairs_window(inputs.window, config.max_pairs, inputs.text_a, inputs.text_b)
    counter.with_counts(window)
    reference = counter.with_counts(
        Window(str(inputs.reference), reference_frame(inputs.reference))
    )
    logger.info("reference: %d pairs of %s", len(reference), inputs.reference)

    def predicted(texts: object) -> np.ndarray:
        return probe.run(texts)[2] if same_graph else scorer.predict_proba(texts)

    reference_probabilities = predicted(reference_frame(inputs.prediction_reference))
    window_vectors = None
    if window.texts is not None:  # one pass: the vectors and, from the same graph, the answers
        u, v, probabilities = probe.run(window.texts)
        window_vectors = np.stack([u, v], axis=1)
        if window.probabilities is None and same_graph:
            window.probabilities = probabilities
    if window.probabilities is None:
        window.probabilities = scorer.predict_proba(window.texts)
    results = [
        checks.ks_check(
            "token_lengths", reference.tokens, window.tokens, config.alpha, config.ks_min_effect
        )
    ]
    results += vocabulary_checks(counter, reference, window, config)
    if window_vectors is None:
        results.append(checks.skipped("sentence_vectors", NEEDS_TEXTS))
    else:
        reference_sample = sample(reference.texts, config.reference_pairs, config.seed)
        logger.info(
            "sentence vectors: %d reference and %d window pairs", len(reference_sample), len(window)
        )
        results.append(
            checks.domain_classifier_check(
                _vectors(probe, reference_sample),
                window_vectors,
                config.alpha,
                config.domain_min_auc,
                config.domain_folds,
                config.domain_permutations,
                config.domain_c,
                config.seed,
            )
        )
    names = np.array(class_names)
    reference_labels = names[reference_probabilities.argmax(axis=1)].tolist()
    window_labels = window.labels or names[window.probabilities.argmax(axis=1)].tolist()
    results.append(
        checks.label_mix_check(
            reference_labels, window_labels, class_names, config.alpha, config.label_min_effect
        )
    )
    confidence = {
        "reference": reference_probabilities.max(axis=1),
        "window": window.probabilities.max(axis=1),
    }
    results.append(
        checks.ks_check(
            "confidence",
            {"max_probability": confidence["reference"]},
            {"max_probability": confidence["window"]},
            config.alpha,
            config.ks_min_effect,
        )
    )
    for result in results:
        logger.info(
            "%s: %s (score %s, threshold %s)",
            result.name,
            result.verdict,
            result.score,
            result.threshold,
        )
    return DriftResult(
        inputs=inputs,
        window_pairs=len(window),
        class_names=class_names,
        checks=results,
        figures_data={
            "tokens": (reference.tokens, window.tokens),
            "labels": (reference_labels, window_labels),
            "confidence": confidence,
        },
    )
