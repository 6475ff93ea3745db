"""Small statistics shared by the reports: binomial confidence intervals of accuracies."""

from __future__ import annotations

import math

__all__ = ["wilson_interval", "accuracy_summary"]

Z95 = 1.959963984540054          # two-sided 95 % quantile of the standard normal


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion correct/n (95 % by default).

    p̂ = k/n; centre = (p̂ + z²/2n) / (1 + z²/n); half-width = z·sqrt(p̂(1-p̂)/n + z²/4n²) /
    (1 + z²/n). Unlike p̂ ± z·sqrt(p̂(1-p̂)/n) it stays inside [0, 1] and is not empty at
    p̂ = 0 or 1 (5 of 5 correct gives [0.57, 1], not [1, 1]).
    """
    if n <= 0:
        return (0.0, 1.0)
    p = correct / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def accuracy_summary(correct: int, n: int) -> dict:
    """{"accuracy", "n", "ci95": [low, high]} of correct/n."""
    low, high = wilson_interval(correct, n)
    return {"accuracy": correct / n if n else float("nan"), "n": int(n), "ci95": [low, high]}


def format_accuracy(summary: dict) -> str:
    """'85.3 % (95 % CI 81.2-88.6 %, N = 360)'."""
    low, high = summary["ci95"]
    return (f"{summary['accuracy']:.1%} (95 % CI {100 * low:.1f}-{100 * high:.1f} %, "
            f"N = {summary['n']})")
