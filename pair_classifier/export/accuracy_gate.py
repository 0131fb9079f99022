"""Whether an int8 graph lost more accuracy than allowed, judged on the size of the split.

The rule: the int8 and the fp32 graph predict the same ``n`` validation pairs. Only the pairs
where exactly one of them is right tell them apart: ``lost`` pairs fp32 got right and int8 got
wrong, ``gained`` the reverse; the observed drop is ``(lost - gained) / n``. Given the
``lost + gained`` discordant pairs, a one-sided Clopper-Pearson bound on the share of ``lost``
among them gives a lower confidence bound on the drop, ``(lost + gained) / n * (2 * p_low - 1)``.
A variant is rejected only when that bound exceeds ``quantize.max_accuracy_drop``: the split
shows, at ``quantize.gate_confidence``, that the loss is beyond the bound. With a bound of 0
this is McNemar's exact one-sided test. So 6 pairs lost of 495 (0.0121) is within noise, while
on a large split the bound comes close to the observed drop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pair_classifier.evaluation import DECIMALS

BISECTION_STEPS = 60  # halvings of [0, 1]: far below float resolution of a share


def _upper_tail(successes: int, trials: int, share: float) -> float:
    """P(X >= successes) for X ~ Binomial(trials, share), summed in log space."""
    log_factorial = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, trials + 1)))])
    k = np.arange(successes, trials + 1)
    log_terms = (
        log_factorial[trials]
        - log_factorial[k]
        - log_factorial[trials - k]
        + k * np.log(share)
        + (trials - k) * np.log1p(-share)
    )
    return float(np.exp(log_terms).sum())


def share_lower_bound(successes: int, trials: int, confidence: float) -> float:
    """One-sided Clopper-Pearson lower bound of a binomial share at ``confidence``."""
    if successes == 0:
        return 0.0
    alpha = 1.0 - confidence
    low, high = 0.0, 1.0
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        if _upper_tail(successes, trials, middle) < alpha:
            low = middle  # a share this small rarely gives this many successes
        else:
            high = middle
    return low


@dataclass(frozen=True)
class PairedDrop:
    """fp32 against int8 on the same pairs: the discordant counts and the drop's bound."""

    pairs: int
    lost: int  # fp32 right, int8 wrong
    gained: int  # fp32 wrong, int8 right
    confidence: float

    @property
    def drop(self) -> float:
        return (self.lost - self.gained) / self.pairs

    @property
    def drop_lower_bound(self) -> float:
        discordant = self.lost + self.gained
        if not discordant:
            return 0.0
        share = share_lower_bound(self.lost, discordant, self.confidence)
        return discordant / self.pairs * (2 * share - 1)

    def exceeds(self, bound: float) -> bool:
        """The drop is beyond ``bound`` at the confidence (not just observed beyond it)."""
        return self.drop_lower_bound > bound

    def figures(self) -> dict[str, float | int]:
        """What metrics/quantize.json records of the gate."""
        return {
            "accuracy_drop": round(self.drop, DECIMALS),
            "accuracy_drop_lower_bound": round(self.drop_lower_bound, DECIMALS),
            "gate_confidence": self.confidence,
            "pairs": self.pairs,
            "discordant_pairs": {
                "fp32_right_int8_wrong": self.lost,
                "fp32_wrong_int8_right": self.gained,
            },
        }


def paired_drop(
    labels: np.ndarray,
    fp32_predictions: np.ndarray,
    int8_predictions: np.ndarray,
    confidence: float,
) -> PairedDrop:
    """Count the discordant pairs of two graphs' predictions on the same labelled pairs."""
    fp32_right = fp32_predictions == labels
    int8_right = int8_predictions == labels
    return PairedDrop(
        pairs=len(labels),
        lost=int((fp32_right & ~int8_right).sum()),
        gained=int((~fp32_right & int8_right).sum()),
        confidence=confidence,
    )


def rejection_reason(name: str, gate: PairedDrop, bound: float) -> str:
    """One line saying why ``name`` is left out of serving and of the benchmark's pick."""
    return (
        f"{name}: validation accuracy dropped by {gate.drop:.4f} ({gate.lost} pairs lost, "
        f"{gate.gained} gained of {gate.pairs}); at confidence {gate.confidence} the drop is at "
        f"least {gate.drop_lower_bound:.4f}, more than quantize.max_accuracy_drop={bound}"
    )


def rejection_hint() -> str:
    """The settings that help rejected CPU graphs back within the bound."""
    return (
        "Try quantize.calibration_size (calibrate on more pairs), quantize.calibration_method "
        "(entropy), quantize.static_exclude_nodes (keep more products in float), "
        "quantize.include_nodes (quantise fewer products), quantize.per_channel: true, "
        "quantize.reduce_range: true (CPUs without VNNI), or, knowingly, "
        "quantize.max_accuracy_drop / quantize.gate_confidence"
    )
