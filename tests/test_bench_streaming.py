"""The streaming benchmark runs end to end, on a few photos with a random network."""

import pytest

from tools import bench_streaming

pytestmark = [pytest.mark.streaming, pytest.mark.slow]


def test_bench_streaming_prints_latency_new_photos_and_checkpoint_figures(capsys):
    figures = bench_streaming.main(
        [
            "--rate",
            "4",
            "--seconds",
            "3",
            "--interval",
            "1",
            "--old",
            "300",
            "--checkpoint-files",
            "2500",
            "--params",
            "backbone.weights=null,backbone.input_size=32",
        ]
    )
    latency, [new_photos], checkpoint = figures["latency"], figures["new_photos"], figures["checkpoint"]
    assert latency["photos"] == 12 and 0 < latency["p50_s"] <= latency["p95_s"] <= latency["max_s"]
    assert new_photos["old"] == 300 and new_photos["run_s"] > 0 and new_photos["k"] >= 1
    assert new_photos["batch_incremental_s"] > 0  # it featurized the 10 photos and kept the 300 rows
    assert checkpoint["files"] == 2500 and checkpoint["batches"] == 3 and checkpoint["checkpoint_kb"] > 0
    printed = capsys.readouterr().out
    assert "p95" in printed and "10 new photos on 300 featurized" in printed and "batch incremental run" in printed
    assert "Checkpoint after 2,500" in printed
