"""Project hooks: Spark configuration and up-front parameter validation."""

from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl

from fruits_kedro import spark

logger = logging.getLogger(__name__)


class SparkHooks:
    @hook_impl
    def after_context_created(self, context) -> None:
        """Record this environment's ``spark*.yml``; the session starts only when needed."""
        try:
            conf = context.config_loader["spark"]
        except KeyError:
            conf = {}
        spark.configure(conf)


class ParameterValidationHooks:
    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        """Check every setting the run uses before Spark starts, so mistakes cost seconds.

        Errors name the setting and say how to fix it. Spark is started here, after the
        checks, so that every dataset (ours and kedro-datasets') shares the configured session.
        """
        from fruits_kedro.params import validate_run

        parameters = catalog.load("parameters")
        used = {name.removeprefix("params:").split(".")[0] for name in pipeline.inputs() if name.startswith("params:")}
        validate_run(parameters, used_sections=used)
        spark.get_spark()
