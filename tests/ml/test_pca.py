import functools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fruits_kedro.ml.pca import CentredProjection, choose_k, fit_principal_components, merge_moments, moments_of


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


def _vectors(spark, x: np.ndarray):
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    rows = [(i, [float(v) for v in row]) for i, row in enumerate(x)]
    return spark.createDataFrame(rows, "id long, x array<double>").select("id", array_to_vector(F.col("x")).alias("v"))


def test_the_projection_stage_centres_and_projects_and_survives_a_pipeline_save(spark, tmp_path):
    from pyspark.ml import PipelineModel

    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 6)) * np.arange(1, 7)
    frame = _vectors(spark, x).repartition(3)
    mean, ratios, axes = fit_principal_components(frame, "v")
    np.testing.assert_allclose(mean, x.mean(axis=0), atol=1e-12)
    assert ratios[0] >= ratios[-1] and abs(ratios.sum() - 1) < 1e-12

    stage = CentredProjection.of(mean, axes[:, :3], "v", "pca")
    expected = (x - x.mean(axis=0)) @ axes[:, :3]
    got = np.array([r.pca.toArray() for r in stage.transform(frame).orderBy("id").collect()])
    np.testing.assert_allclose(got, expected, atol=1e-9)

    PipelineModel([stage]).write().save(str(tmp_path / "model"))
    loaded = PipelineModel.load(str(tmp_path / "model"))
    again = np.array([r.pca.toArray() for r in loaded.transform(frame).orderBy("id").collect()])
    np.testing.assert_array_equal(again, got)
    np.testing.assert_array_equal(loaded.stages[0].matrices()[1], axes[:, :3])


def test_the_projection_stage_refuses_axes_of_another_width():
    with pytest.raises(ValueError, match=r"d x k with d = 4"):
        CentredProjection.of(np.zeros(4), np.zeros((5, 2)), "v", "pca")
