"""Accuracy against speed: the intervals, the frontier and the rule that picks a default.

Pure Python on the evaluation's numbers (no Spark), so that the table, the plot and the
README's rule agree: "the most accurate, unless another is within 0.5 point and at least
1.5x faster".
"""

from __future__ import annotations

import math
from collections.abc import Mapping

# z of a two-sided 95% interval.
Z_95 = 1.959963984540054
# The rule: a variant this close in accuracy (0.5 point) and this much faster replaces the most accurate.
TOLERATED_ACCURACY = 0.005
REQUIRED_SPEED_UP = 1.5


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default): unlike the normal
    approximation it stays inside [0, 1] and is sound near 100%, where accuracies are."""
    if n <= 0:
        raise ValueError("An interval needs at least one trial")
    if not 0 <= successes <= n:
        raise ValueError(f"{successes} successes out of {n} trials")
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def pareto_optimal(points: Mapping[str, tuple[float, float]]) -> list[str]:
    """The names whose (accuracy, images/s) no other point matches or beats on both with one
    strictly better: the frontier, in the order given."""
    frontier = []
    for name, (accuracy, speed) in points.items():
        dominated = any(
            a >= accuracy and s >= speed and (a > accuracy or s > speed)
            for other, (a, s) in points.items()
            if other != name
        )
        if not dominated:
            frontier.append(name)
    return frontier


def choose_by_rule(
    points: Mapping[str, tuple[float, float]],
    tolerated: float = TOLERATED_ACCURACY,
    speed_up: float = REQUIRED_SPEED_UP,
) -> tuple[str | None, str]:
    """The variant the rule picks from (accuracy, images/s) points, and why, in one sentence.

    The most accurate, unless others are within ``tolerated`` of its accuracy and at least
    ``speed_up`` times as fast: then the fastest of those.
    """
    if not points:
        return None, "nothing was evaluated"
    best = max(points, key=lambda name: (points[name][0], points[name][1]))
    accuracy, speed = points[best]
    faster = [
        name
        for name, (a, s) in points.items()
        if name != best and a >= accuracy - tolerated - 1e-12 and speed > 0 and s >= speed_up * speed
    ]
    if not faster:
        return best, f"{best} is the most accurate and none within {100 * tolerated:.1f} point is {speed_up}x as fast"
    chosen = max(faster, key=lambda name: (points[name][1], points[name][0]))
    a, s = points[chosen]
    return chosen, (
        f"{chosen} is {100 * (accuracy - a):.2f} point(s) behind the most accurate ({best}) "
        f"and {s / speed:.2f}x as fast"
    )
