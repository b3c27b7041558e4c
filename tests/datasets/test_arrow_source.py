"""Arrow functions on a frame read from a Parquet dataset run in its reading tasks, and give
what the same functions give on any other frame."""

import pyarrow as pa

from fruits_kedro.datasets.arrow_source import arrow_source, map_in_arrow, with_constant_column
from fruits_kedro.datasets.spark_parquet import SparkParquetFsspecDataset


def test_a_loaded_dataset_is_mapped_in_its_reading_tasks(spark, tmp_path):
    def _doubled(batches):  # local: pickled by value, as the workers cannot import tests/
        for batch in batches:
            yield pa.RecordBatch.from_arrays(
                [batch.column("id"), pa.compute.multiply(batch.column("x"), 2)], ["id", "x"]
            )

    frame = spark.createDataFrame([(i, float(i)) for i in range(100)], "id long, x double").repartition(7)
    dataset = SparkParquetFsspecDataset(filepath=str(tmp_path / "table.parquet"))
    dataset.save(frame)
    loaded = dataset.load()
    mapped = map_in_arrow(loaded, _doubled, "id long, x double")
    assert arrow_source(mapped) is not None and arrow_source(frame) is None
    # One Python function over the part files: no Spark rows between reader and function.
    assert "MapInArrow" in mapped._jdf.queryExecution().executedPlan().toString()
    assert mapped._jdf.queryExecution().executedPlan().toString().count("MapInArrow") == 1
    assert sorted(map_in_arrow(frame, _doubled, "id long, x double").collect()) == sorted(mapped.collect())
    stamped = with_constant_column(mapped, "run_id", "r1")
    assert arrow_source(stamped) is not None
    assert stamped.columns == ["id", "x", "run_id"]
    assert {row.run_id for row in stamped.collect()} == {"r1"}
    # Saved again: read, mapped and written in the same tasks.
    again = SparkParquetFsspecDataset(filepath=str(tmp_path / "again.parquet"))
    again.save(stamped)
    assert sorted(again.load().collect()) == sorted(
        with_constant_column(frame, "run_id", "r1").selectExpr("id", "x * 2 as x", "run_id").collect()
    )


def test_a_cached_frame_is_mapped_from_its_cache_not_recomputed_from_its_source(spark, tmp_path):
    def _same(batches):
        yield from batches

    dataset = SparkParquetFsspecDataset(filepath=str(tmp_path / "table.parquet"))
    dataset.save(spark.createDataFrame([(i,) for i in range(10)], "id long"))
    loaded = dataset.load()
    cached = loaded.persist()  # the same object, with its marks
    try:
        assert arrow_source(cached) is None
        plan = map_in_arrow(cached, _same, "id long")._jdf.queryExecution().executedPlan().toString()
        assert "InMemoryTableScan" in plan, plan
    finally:
        cached.unpersist()
