"""The notebook runs top to bottom against a real run's outputs, through Kedro's IPython extension."""

import nbformat
from nbclient import NotebookClient


def test_features_notebook_executes_and_shows_the_plots(default_run):
    path = default_run / "notebooks" / "fruits_features.ipynb"
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    texts = "".join(o.get("text", "") for o in outputs)
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert "components explain" in texts
    assert "nearest-centroid accuracy" in texts
    assert len(images) >= 2  # the scree plot and the 2-D PCA scatter
