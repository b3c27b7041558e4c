"""kedro-datasets' JSONDataset whose Kedro-Viz preview is empty, not an error, until a run has
saved it: the evaluation pipeline's reports, which ``kedro viz`` shows before that pipeline
has ever run."""

from __future__ import annotations

from kedro_datasets._typing import JSONPreview
from kedro_datasets.json import JSONDataset as _JSONDataset


class JSONDataset(_JSONDataset):
    """``json.JSONDataset``, previewed once saved.

    Examples:
        In ``catalog.yml``::

            evaluation_metrics:
              type: fruits_kedro.datasets.JSONDataset
              filepath: data/08_reporting/evaluation_metrics.json

        In Python::

            >>> from fruits_kedro.datasets import JSONDataset
            >>> report = JSONDataset(filepath=f"{tmp_path}/report.json")
            >>> report.preview() is None
            True
            >>> report.save({"k": 3})
            >>> report.preview()
            '{"k": 3}'
    """

    # None until saved; the annotation is the kind of preview, which Kedro-Viz reads.
    def preview(self) -> JSONPreview:
        return super().preview() if self.exists() else None
