"""fruits_kedro.datasets.MatplotlibDataset: kedro-datasets' own, previewed once saved."""

import base64
import inspect

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from fruits_kedro.datasets import MatplotlibDataset  # noqa: E402


def test_a_plot_not_saved_yet_has_an_empty_preview_then_its_png(tmp_path):
    plot = MatplotlibDataset(filepath=str(tmp_path / "08_reporting" / "plot.png"))
    assert plot.preview() is None
    figure, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    plot.save(figure)
    assert base64.b64decode(plot.preview()).startswith(b"\x89PNG")
    assert inspect.signature(plot.preview).return_annotation == "ImagePreview"
