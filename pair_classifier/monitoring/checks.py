"""The drift checks. Each gives a score, the threshold it is held against, and a verdict:
``drift`` when the score is above the threshold, ``skipped`` (with the reason) when the window
lacks what the check reads.

Statistical checks share one rule: the score is an effect size (a KS distance, Cramér's V, an
AUC), and the threshold is the larger of the value the test needs to be significant at
``alpha`` for these sample sizes and a configured smallest effect, so that neither a tiny
window (noise) nor a huge one (any difference is significant) raises false alarms.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

logger = logging.getLogger(__name__)

DRIFT, NO_DRIFT, SKIPPED = "drift", "no_drift", "skipped"
NULL_AUC = 0.5
MAX_ITERATIONS = 1000  # of the logistic regression's solver


@dataclass(frozen=True)
class CheckResult:
    name: str
    score: float | None
    threshold: float | None
    verdict: str
    details: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "threshold": self.threshold,
            "verdict": self.verdict,
            **self.details,
        }


def judged(name: str, score: float, threshold: float, **details: Any) -> CheckResult:
    verdict = DRIFT if score > threshold else NO_DRIFT
    return CheckResult(name, round(float(score), 6), round(float(threshold), 6), verdict, details)


def skipped(name: str, reason: str) -> CheckResult:
    return CheckResult(name, None, None, SKIPPED, {"reason": reason})


def ks_critical(alpha: float, n: int, m: int) -> float:
    """The two-sample KS distance significant at ``alpha`` (asymptotic formula)."""
    return math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt((n + m) / (n * m))


def ks_check(
    name: str,
    reference: dict[str, np.ndarray],
    current: dict[str, np.ndarray],
    alpha: float,
    min_effect: float,
) -> CheckResult:
    """KS distance of each named sample (e.g. each side's token counts); the score is the
    largest, its threshold at ``alpha`` split over the samples (Bonferroni)."""
    distances, p_values = {}, {}
    for key in reference:
        result = stats.ks_2samp(reference[key], current[key])
        distances[key], p_values[key] = float(result.statistic), float(result.pvalue)
    n = min(len(values) for values in reference.values())
    m = min(len(values) for values in current.values())
    threshold = max(ks_critical(alpha / len(reference), n, m), min_effect)
    return judged(
        name,
        max(distances.values()),
        threshold,
        ks_distance=distances,
        p_value=p_values,
        reference_n=n,
        window_n=m,
    )


def share_check(
    name: str, current: float, expected: float, margin: float, **details: Any
) -> CheckResult:
    """A share (of tokens) against what the reference leads to expect plus a margin."""
    return judged(name, current, expected + margin, expected=round(expected, 6), **details)


def label_mix_check(
    reference: Sequence[str],
    current: Sequence[str],
    classes: Sequence[str],
    alpha: float,
    min_effect: float,
) -> CheckResult:
    """Chi-square test of the predicted-label counts; the score is Cramér's V."""
    counts = np.array(
        [
            [sum(label == name for label in labels) for name in classes]
            for labels in (reference, current)
        ]
    )
    used = counts.sum(axis=0) > 0
    mix = {
        "reference_share": dict(zip(classes, (counts[0] / counts[0].sum()).round(4).tolist())),
        "window_share": dict(zip(classes, (counts[1] / counts[1].sum()).round(4).tolist())),
    }
    if used.sum() < 2:
        return judged("label_mix", 0.0, 1.0, **mix, note="one class only on both sides")
    table = counts[:, used]
    chi2, p_value, dof, _ = stats.chi2_contingency(table, correction=False)
    total = table.sum()
    cramers_v = math.sqrt(chi2 / total)  # a 2 x k table: min(rows, columns) - 1 = 1
    critical = math.sqrt(stats.chi2.ppf(1 - alpha, dof) / total)
    return judged(
        "label_mix",
        cramers_v,
        max(critical, min_effect),
        chi2=round(float(chi2), 4),
        p_value=float(p_value),
        **mix,
    )


def null_auc_bound(alpha: float, n: int, m: int) -> float:
    """The AUC two samples of sizes n and m exceed with probability alpha under no difference
    (the Mann-Whitney statistic's normal approximation)."""
    return NULL_AUC + stats.norm.ppf(1 - alpha) * math.sqrt((n + m + 1) / (12 * n * m))


def domain_classifier_check(
    reference: np.ndarray,
    current: np.ndarray,
    alpha: float,
    min_auc: float,
    folds: int,
    permutations: int,
    inverse_regularisation: float,
    seed: int,
) -> CheckResult:
    """Can a classifier tell the window's sentence vectors from the reference's? ``reference``
    and ``current`` are (pairs, 2, dim): each text a sample, both texts of a pair in the same
    fold. The score is the out-of-fold ROC AUC of a logistic regression; no drift leaves it
    near 0.5. Its threshold: the largest of ``min_auc``, the AUC significant at ``alpha`` for
    these numbers of pairs, and the AUCs reached with the window/reference labels shuffled."""
    rng = np.random.default_rng(seed)
    pairs = np.concatenate([reference, current])
    domain = np.r_[np.zeros(len(reference)), np.ones(len(current))]
    auc = _out_of_fold_auc(pairs, domain, folds, inverse_regularisation, seed)
    null_aucs = [
        _out_of_fold_auc(pairs, rng.permutation(domain), folds, inverse_regularisation, seed)
        for _ in range(permutations)
    ]
    bound = null_auc_bound(alpha, len(reference), len(current))
    threshold = max([min_auc, bound, *null_aucs])
    return judged(
        "sentence_vectors",
        auc,
        threshold,
        method="logistic regression on each text's vector, out-of-fold ROC AUC",
        null_auc_bound=round(bound, 6),
        permuted_aucs=[round(value, 4) for value in null_aucs],
        reference_pairs=len(reference),
        window_pairs=len(current),
    )


def _out_of_fold_auc(
    pairs: np.ndarray, domain: np.ndarray, folds: int, inverse_regularisation: float, seed: int
) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scores = np.empty(len(pairs))
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(pairs, domain):
        model = make_pipeline(
            StandardScaler(),
            LogisticRegression(C=inverse_regularisation, max_iter=MAX_ITERATIONS),
        )
        texts = pairs[train].reshape(-1, pairs.shape[-1])  # both texts of each training pair
        model.fit(texts, np.repeat(domain[train], pairs.shape[1]))
        held_out = model.decision_function(pairs[test].reshape(-1, pairs.shape[-1]))
        scores[test] = held_out.reshape(len(test), pairs.shape[1]).mean(axis=1)
    return float(roc_auc_score(domain, scores))
