"""The optional extras (``[torch]``, ``[mlflow]``): a test that needs one is skipped, naming the
install, where it is missing (``make run`` installs neither; ``make test`` both)."""

from __future__ import annotations

import importlib.util

import pytest

from fruits_kedro.inference.registry import get_backbone
from fruits_kedro.inference.torch_export import missing_packages

MISSING_TORCH = missing_packages(get_backbone("efficientnet_lite0"))
TORCH_REASON = f'needs the [torch] extra ({", ".join(MISSING_TORCH)} missing): pip install -e ".[torch]"'
MISSING_MLFLOW = [module for module in ("mlflow", "kedro_mlflow") if importlib.util.find_spec(module) is None]
MLFLOW_REASON = f'needs the [mlflow] extra ({", ".join(MISSING_MLFLOW)} missing): pip install -e ".[mlflow]"'

requires_torch = pytest.mark.skipif(bool(MISSING_TORCH), reason=TORCH_REASON)
requires_mlflow = pytest.mark.skipif(bool(MISSING_MLFLOW), reason=MLFLOW_REASON)


def skip_without_torch() -> None:
    """For fixtures, which marks do not reach."""
    if MISSING_TORCH:
        pytest.skip(TORCH_REASON)
