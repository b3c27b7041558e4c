import numpy as np
import pytest

from fruits_kedro.ml.pca import PCAUndefinedError, choose_k
from fruits_kedro.pipelines.dimensionality_reduction.nodes import fit_pca, plot_scree
from tests.params import params


def _features_frame(spark, matrix: np.ndarray):
    rows = [(f"img_{i:03d}.jpg", f"class_{i % 3}", "Training", [float(v) for v in row]) for i, row in enumerate(matrix)]
    return spark.createDataFrame(rows, "path string, label string, split string, features array<float>")


def test_fit_pca_finds_the_rank_of_low_rank_data(spark):
    rng = np.random.default_rng(0)
    # 60 points in 12 dimensions that really live on a 3-D subspace, plus faint noise.
    basis = rng.normal(size=(3, 12))
    scores = rng.normal(size=(60, 3)) * np.array([5.0, 3.0, 2.0])
    matrix = scores @ basis + rng.normal(scale=1e-3, size=(60, 12))
    reduced, report = fit_pca(
        _features_frame(spark, matrix), params("dimensionality_reduction", variance_threshold=0.95)
    )
    assert report["k"] == choose_k(report["explained_variance"], 0.95)
    assert 1 <= report["k"] <= 3
    assert report["cumulative"][report["k"] - 1] >= 0.95
    assert report["n_input_features"] == 12 and report["n_images"] == 60
    assert reduced.columns == ["path", "label", "split"] + [f"pc_{i + 1}" for i in range(report["k"])]
    pandas = reduced.toPandas()
    assert len(pandas) == 60
    # Scores are centred and reproduce the variance Spark reported.
    pcs = pandas[[f"pc_{i + 1}" for i in range(report["k"])]].to_numpy()
    assert np.allclose(pcs.mean(axis=0), 0, atol=1e-3)
    total = np.var(matrix, axis=0, ddof=1).sum()
    assert np.isclose(pcs.var(axis=0, ddof=1).sum() / total, report["cumulative"][report["k"] - 1], rtol=1e-3)


def test_fit_pca_threshold_one_keeps_the_full_rank(spark):
    rng = np.random.default_rng(1)
    matrix = rng.normal(size=(8, 20))  # fewer images than features: rank 7 after centring
    _, report = fit_pca(_features_frame(spark, matrix), params("dimensionality_reduction", variance_threshold=1.0))
    assert report["k"] == 7
    assert report["cumulative"][-1] == pytest.approx(1.0, abs=1e-6)


def test_fit_pca_refuses_identical_vectors(spark):
    matrix = np.ones((5, 4))
    with pytest.raises(PCAUndefinedError, match="no variance"):
        fit_pca(_features_frame(spark, matrix), params("dimensionality_reduction", variance_threshold=0.95))


@pytest.mark.parametrize("threshold", [0.0, -0.5, 1.5])
def test_fit_pca_rejects_threshold_outside_unit_interval(spark, threshold):
    with pytest.raises(ValueError, match="variance_threshold"):
        fit_pca(_features_frame(spark, np.eye(4)), params("dimensionality_reduction", variance_threshold=threshold))


def test_plot_scree_draws_the_chosen_k():
    report = {
        "k": 2,
        "threshold": 0.9,
        "n_input_features": 4,
        "explained_variance": [0.6, 0.35, 0.05],
        "cumulative": [0.6, 0.95, 1.0],
    }
    figure = plot_scree(report)
    assert "k=2" in figure.axes[0].get_title()
    (bars,) = figure.axes[0].patches  # every component's share, drawn as one outline
    np.testing.assert_array_equal(bars.get_data().values, report["explained_variance"])
    np.testing.assert_array_equal(bars.get_data().edges, [0.5, 1.5, 2.5, 3.5])


def test_fit_pca_refuses_a_single_image(spark):
    with pytest.raises(PCAUndefinedError, match="at least 2 images"):
        fit_pca(_features_frame(spark, np.ones((1, 4))), params("dimensionality_reduction", variance_threshold=0.95))


def test_fit_pca_is_the_same_whatever_the_partitioning(spark):
    """Spark ML's general SVD gave k=52 or 80 for one matrix depending on partitions; eigh does not."""
    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(90, 40)) * np.geomspace(1, 1e-3, 40) + 1e3  # large mean, falling spectrum
    matrix = matrix.astype(np.float32).astype(np.float64)  # what Spark sees: features are float32
    frame = _features_frame(spark, matrix)
    results = [
        fit_pca(frame.repartition(parts), params("dimensionality_reduction", variance_threshold=0.95))
        for parts in (1, 3)
    ]
    (one, report_one), (three, report_three) = results
    assert report_one["k"] == report_three["k"]
    np.testing.assert_allclose(report_one["explained_variance"], report_three["explained_variance"], rtol=1e-9)
    centred = matrix - matrix.mean(axis=0)
    expected = np.linalg.svd(centred, compute_uv=False) ** 2
    np.testing.assert_allclose(
        report_one["explained_variance"],
        (expected / expected.sum())[: len(report_one["explained_variance"])],
        rtol=1e-6,
        atol=1e-12,
    )
    a = one.orderBy("path").toPandas().filter(like="pc_").to_numpy()
    b = three.orderBy("path").toPandas().filter(like="pc_").to_numpy()
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(a).max())


def test_fit_pca_on_a_saved_dataset_runs_in_its_reading_tasks_with_the_same_results(spark, tmp_path):
    from fruits_kedro.datasets.arrow_source import arrow_source
    from fruits_kedro.datasets.spark_parquet import SparkParquetFsspecDataset

    rng = np.random.default_rng(5)
    matrix = (rng.normal(size=(70, 16)) * np.geomspace(3, 0.01, 16) + 0.5).astype(np.float32)
    rows = [(f"img_{i:03d}.jpg", f"class_{i % 3}", "Training", [float(v) for v in r]) for i, r in enumerate(matrix)]
    rows.append(("broken.jpg", "class_0", "Training", None))  # no features: not in the PCA
    frame = spark.createDataFrame(rows, "path string, label string, split string, features array<float>")
    saved = SparkParquetFsspecDataset(filepath=str(tmp_path / "features.parquet"))
    saved.save(frame.repartition(5))
    loaded = saved.load()
    assert arrow_source(loaded) is not None
    settings = params("dimensionality_reduction", variance_threshold=0.9)
    plain_scores, plain_report = fit_pca(frame.repartition(3), settings)
    scores, report = fit_pca(loaded, settings)
    assert report["k"] == plain_report["k"] and report["n_images"] == plain_report["n_images"] == 70
    # Other partitions sum in another order: equal to rounding.
    np.testing.assert_allclose(report["explained_variance"], plain_report["explained_variance"], rtol=1e-9)
    assert arrow_source(scores) is not None  # its save reads, projects and writes in one pass
    out = SparkParquetFsspecDataset(filepath=str(tmp_path / "pca.parquet"))
    out.save(scores)
    got = out.load().toPandas().sort_values("path").reset_index(drop=True)
    expected = plain_scores.toPandas().sort_values("path").reset_index(drop=True)
    assert got.columns.tolist() == expected.columns.tolist() and got.dtypes.equals(expected.dtypes)
    assert got["path"].tolist() == expected["path"].tolist() == sorted(r[0] for r in rows[:70])
    pcs = [f"pc_{i + 1}" for i in range(report["k"])]
    np.testing.assert_allclose(got[pcs].to_numpy(), expected[pcs].to_numpy(), rtol=1e-5, atol=1e-5)


def test_fit_pca_refuses_vectors_of_different_widths(spark):
    rows = [("a.jpg", "x", "Training", [1.0, 2.0]), ("b.jpg", "x", "Training", [1.0, 2.0, 3.0])]
    frame = spark.createDataFrame(rows, "path string, label string, split string, features array<float>")
    with pytest.raises(Exception, match="different lengths"):
        fit_pca(frame.coalesce(1), params("dimensionality_reduction", variance_threshold=0.95))
