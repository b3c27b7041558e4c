import numpy as np
import pyarrow as pa

from fruits_kedro.ml import moments
from fruits_kedro.ml.moments import batches_moments, moments_of, partition_moments


def _batches(x: np.ndarray, null_rows: set[int], sizes: list[int]) -> list[pa.RecordBatch]:
    values = [None if i in null_rows else [float(v) for v in row] for i, row in enumerate(x)]
    column = pa.array(values, type=pa.list_(pa.float32()))
    table = pa.table({"path": [f"p{i}" for i in range(len(x))], "features": column})
    starts = np.cumsum([0, *sizes[:-1]])
    return [table.slice(start, size).to_batches()[0] for start, size in zip(starts, sizes, strict=True)]


def test_moments_of_arrow_batches_skip_null_rows_and_equal_those_of_the_stacked_rows(monkeypatch):
    monkeypatch.setattr(moments, "ROWS_PER_BLOCK", 4)  # several blocks merged, as with many rows
    rng = np.random.default_rng(7)
    x = (rng.normal(size=(23, 5)) * np.arange(1, 6) + 100).astype(np.float32)
    batches = _batches(x, null_rows={0, 9, 22}, sizes=[3, 1, 10, 9])
    valid = np.delete(x, [0, 9, 22], axis=0).astype(np.float64)

    n, mean, scatter = batches_moments(batches, "features")
    expected = moments_of(valid)
    assert n == expected[0] == 20
    np.testing.assert_allclose(mean, expected[1], rtol=1e-12)
    np.testing.assert_allclose(scatter, expected[2], rtol=1e-9)
    # The executors' Arrow function gives the same moments, as one row.
    [row] = list(partition_moments("features")(iter(batches)))
    assert row.column("n").to_pylist() == [20]
    np.testing.assert_allclose(np.frombuffer(row.column("scatter")[0].as_py()), expected[2], rtol=1e-9)


def test_batches_without_a_valid_row_have_no_moments():
    batches = _batches(np.ones((2, 3), dtype=np.float32), null_rows={0, 1}, sizes=[2])
    assert batches_moments(batches, "features")[0] == 0
    assert list(partition_moments("features")(iter(batches))) == []
