import pytest

from fruits_kedro.ml.frontier import choose_by_rule, pareto_optimal, wilson_interval


def test_the_wilson_interval_matches_published_values_and_stays_in_bounds():
    # Newcombe (1998), table I: 81/263 -> 0.2553-0.3662; 15/148 -> 0.0624-0.1605.
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=5e-5)
    assert wilson_interval(15, 148) == pytest.approx((0.0624, 0.1605), abs=5e-5)
    low, high = wilson_interval(515, 515)
    assert high == pytest.approx(1.0) and 0.99 < low < 0.995  # all correct: the interval still has a width
    assert wilson_interval(0, 10)[0] == 0.0
    with pytest.raises(ValueError, match="6 successes out of 5"):
        wilson_interval(6, 5)


def test_the_frontier_keeps_the_points_no_other_beats_on_both():
    points = {"fp32": (0.95, 250.0), "int8": (0.946, 480.0), "small": (0.93, 900.0), "slow": (0.94, 240.0)}
    assert pareto_optimal(points) == ["fp32", "int8", "small"]
    assert pareto_optimal({"a": (0.9, 10.0), "b": (0.9, 10.0)}) == ["a", "b"]  # ties dominate neither


def test_the_rule_keeps_the_most_accurate_unless_one_close_enough_is_fast_enough():
    chosen, why = choose_by_rule({"fp32": (0.9939, 254.0), "int8": (0.9918, 498.0), "lite0": (0.9927, 201.0)})
    assert chosen == "int8" and "0.21 point(s) behind the most accurate (fp32)" in why and "1.96x" in why
    # 0.55 point behind: too far, however fast.
    assert choose_by_rule({"fp32": (0.9939, 254.0), "small": (0.9884, 1270.0)})[0] == "fp32"
    # Close enough but only 1.4x as fast.
    assert choose_by_rule({"fp32": (0.95, 100.0), "int8": (0.949, 140.0)})[0] == "fp32"
    # Several qualify: the fastest of them.
    assert choose_by_rule({"a": (0.95, 100.0), "b": (0.948, 160.0), "c": (0.946, 300.0)})[0] == "c"
    assert choose_by_rule({}) == (None, "nothing was evaluated")
