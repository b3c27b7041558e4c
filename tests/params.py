"""The project's parameters as a run gets them: ``conf/base/parameters_*.yml``, the one source
of defaults, with a test's overrides on top."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from kedro.config import OmegaConfigLoader

from fruits_kedro.settings import CONFIG_LOADER_ARGS
from tests.conftest import PROJECT_ROOT


@cache
def _base() -> dict[str, Any]:
    return dict(OmegaConfigLoader(str(PROJECT_ROOT / "conf"), **CONFIG_LOADER_ARGS)["parameters"])


def base_parameters() -> dict[str, Any]:
    """Every section, as in ``conf/base`` (``images_root`` and other runtime values excluded)."""
    return copy.deepcopy(_base())


def params(section: str, **overrides: Any) -> dict[str, Any]:
    """``params:<section>`` with ``overrides`` applied (a nested dict replaces its key's value)."""
    return {**copy.deepcopy(_base()[section]), **overrides}
