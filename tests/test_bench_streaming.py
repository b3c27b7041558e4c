"""The streaming benchmark runs end to end, on a few photos with a random network (the latency
run, a processing-time stream, is left to ``make bench``: its figures are computed here)."""

import pytest

from tools import bench_streaming


@pytest.mark.streaming
@pytest.mark.slow
def test_bench_streaming_prints_new_photos_and_checkpoint_figures(capsys):
    figures = bench_streaming.main(
        [
            "--rate",
            "0",
            "--old",
            "300",
            "--checkpoint-files",
            "2500",
            "--params",
            "backbone.weights=null,backbone.input_size=32",
        ]
    )
    assert figures["latency"] is None
    [new_photos], checkpoint = figures["new_photos"], figures["checkpoint"]
    assert new_photos["old"] == 300 and new_photos["run_s"] > 0 and new_photos["k"] >= 1
    assert new_photos["batch_incremental_s"] > 0  # it featurized the 10 photos and kept the 300 rows
    assert checkpoint["files"] == 2500 and checkpoint["batches"] == 3 and checkpoint["checkpoint_kb"] > 0
    printed = capsys.readouterr().out
    assert "10 new photos on 300 featurized" in printed and "batch incremental run" in printed
    assert "Checkpoint after 2,500" in printed


def test_latency_figures_are_percentiles_of_arrival_to_readable_row():
    arrivals = {f"p{i}": 100.0 + i for i in range(20)}
    seen = {path: arrived + (1.0 if i < 19 else 10.0) for i, (path, arrived) in enumerate(arrivals.items())}
    figures = bench_streaming.latency_figures(seen, arrivals, rate=20, interval=2)
    assert (figures["photos"], figures["p50_s"], figures["max_s"]) == (20, 1.0, 10.0)
    assert 1.0 < figures["p95_s"] < 10.0
    assert "p50 1.0 s" in bench_streaming.format_figures(figures, [])
