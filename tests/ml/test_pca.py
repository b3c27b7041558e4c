import functools

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from fruits_kedro.ml.pca import choose_k, merge_moments, moments_of


@given(
    st.lists(st.floats(min_value=0.0, max_value=1.0, allow_nan=False), min_size=1, max_size=50),
    st.floats(min_value=0.01, max_value=1.0),
)
def test_choose_k_is_the_smallest_k_reaching_the_threshold(raw, threshold):
    total = sum(raw)
    ratios = [r / total for r in raw] if total > 0 else [1.0 / len(raw)] * len(raw)
    k = choose_k(ratios, threshold)
    cumulative = np.cumsum(ratios)
    assert 1 <= k <= len(ratios)
    if cumulative[-1] >= threshold - 1e-9:
        assert cumulative[k - 1] >= threshold - 1e-9
        assert k == 1 or cumulative[k - 2] < threshold - 1e-9


def test_merged_moments_of_parts_are_the_moments_of_the_whole():
    # How the partitions' statistics combine; a large mean is where a naive sum of squares fails.
    rng = np.random.default_rng(4)
    x = rng.normal(size=(50, 6)) * np.arange(1, 7) + 1e4
    parts = [x[:7], x[7:8], x[8:30], x[30:]]
    n, mean, scatter = functools.reduce(merge_moments, map(moments_of, parts), (0, np.zeros(0), np.zeros(0)))
    assert n == 50
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(scatter.reshape(6, 6) / (n - 1), np.cov(x, rowvar=False), rtol=1e-9)
