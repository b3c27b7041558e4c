"""The stream's commit record: a replayed micro-batch replaces its own part, never adds rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from fruits_kedro.streaming.store import MEMBERS, StreamStore, new_state


def _store(tmp_path) -> StreamStore:
    store = StreamStore(str(tmp_path), "04_feature/stream", {m: f"04_feature/{m}" for m in MEMBERS})
    store.state = new_state("/photos", "{}")
    return store


def test_a_replayed_part_replaces_its_files_and_rows(tmp_path):
    store = _store(tmp_path)
    store.set_part("features", "b00000000", ["b00000000/part-a.parquet"], 3)
    store.set_part("features", "b00000001", ["b00000001/part-b.parquet"], 2)
    store.set_part("features", "b00000001", ["b00000001/part-c.parquet", "b00000001/part-d.parquet"], 2)
    table = store.state["tables"]["features"]
    assert table["rows"] == 5
    assert table["files"] == ["b00000000/part-a.parquet", "b00000001/part-c.parquet", "b00000001/part-d.parquet"]


def test_the_manifests_follow_the_committed_state(tmp_path):
    store = _store(tmp_path)
    store.set_part("features", "b00000000", ["b00000000/part-a.parquet"], 3)
    store.state["tables"]["features"]["schema"] = {"type": "struct", "fields": []}
    store.write_state()
    reread = _store(tmp_path)
    reread.state = reread.read_state()
    assert reread.state["tables"]["features"]["rows"] == 3
    manifest = json.loads(
        (tmp_path / reread.output_set.member_of(reread.table_path("features")) / "_SUCCESS").read_text()
    )
    assert (manifest["files"], manifest["rows"]) == (["b00000000/part-a.parquet"], 3)
    assert reread.outputs() == {"04_feature/features": reread.output_set.member_of(reread.table_path("features"))}


def test_the_running_moments_round_trip_in_float64(tmp_path):
    store = _store(tmp_path)
    moments = (3, np.array([0.1, 0.2]), np.arange(4, dtype=np.float64) / 3)
    store.state["moments"] = store.write_moments(moments, "b00000004")
    n, mean, scatter = store.read_moments()
    assert n == 3 and mean.dtype == scatter.dtype == np.float64
    assert np.array_equal(mean, moments[1]) and np.array_equal(scatter, moments[2])


def test_small_parts_leave_out_the_base_and_the_large_ones(tmp_path):
    store = _store(tmp_path)
    for part, rows in (("base", 3), ("b00000000", 2), ("m00000004", 9), ("b00000005", 10)):
        store.set_part("features", part, [f"{part}/part-0.parquet"], rows)
    assert store.small_parts("features", 10) == ["b00000000", "m00000004"]


def test_merged_parts_keep_every_row_in_one_part_and_the_replaced_files_go(tmp_path, spark):
    store = _store(tmp_path)
    for batch, paths in enumerate((["a", "b"], ["c"], ["d", "e"])):
        frame = spark.createDataFrame([(p, float(i)) for i, p in enumerate(paths)], "path string, score double")
        store.save_part("features", f"b{batch:08d}", frame)
    store.write_state()
    folder = tmp_path / store.output_set.member_of(store.table_path("features"))
    (folder / "m00000001").mkdir()  # a merge that a killed driver never committed
    assert store.merge_parts("features", ["b00000000", "b00000001"], "m00000002") == 3
    store.write_state()
    store.remove_unnamed_parts()
    table = store.state["tables"]["features"]
    assert (table["rows"], table["part_rows"]) == (5, {"b00000002": 2, "m00000002": 3})
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["b00000002", "m00000002"]
    assert sorted(pd.read_parquet(folder)["path"]) == ["a", "b", "c", "d", "e"]  # a reader of the folder
    assert sorted(store.load_table("features").toPandas()["path"]) == ["a", "b", "c", "d", "e"]  # of the manifest
