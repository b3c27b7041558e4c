"""kedro-datasets' MatplotlibDataset whose Kedro-Viz preview is empty, not an error, until a
run has saved it: the evaluation pipeline's plots, which ``kedro viz`` shows before that
pipeline has ever run."""

from __future__ import annotations

from kedro_datasets._typing import ImagePreview
from kedro_datasets.matplotlib import MatplotlibDataset as _MatplotlibDataset


class MatplotlibDataset(_MatplotlibDataset):
    """``matplotlib.MatplotlibDataset``, previewed once saved.

    Examples:
        In ``catalog.yml``::

            evaluation_comparison_plot:
              type: fruits_kedro.datasets.MatplotlibDataset
              filepath: data/08_reporting/evaluation_feature_sets.png
    """

    def preview(self) -> ImagePreview:  # None until saved
        return super().preview() if self.exists() else None
