"""fruits_kedro.datasets.JSONDataset: kedro-datasets' own, previewed once saved."""

import inspect

from fruits_kedro.datasets import JSONDataset


def test_a_report_not_saved_yet_has_an_empty_preview_then_its_own(tmp_path):
    report = JSONDataset(filepath=str(tmp_path / "08_reporting" / "metrics.json"))
    assert report.preview() is None
    report.save({"accuracy": 0.95})
    assert report.preview() == '{"accuracy": 0.95}'
    # Kedro-Viz picks how to show a preview by the name of its annotation.
    assert inspect.signature(report.preview).return_annotation == "JSONPreview"
