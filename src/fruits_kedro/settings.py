"""Project settings. https://docs.kedro.org/en/stable/kedro_project_setup/settings.html"""

import os
import sys

# Telemetry must never make a command wait on the network (the machines this runs on may
# have none). The project's `.telemetry` file says the same for runs started elsewhere.
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# MLflow's own telemetry reads DO_NOT_TRACK as "true" only; kedro-mlflow's commands may have
# imported MLflow already, whose client then starts nothing once told.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
if "mlflow.telemetry.client" in sys.modules:
    sys.modules["mlflow.telemetry.client"].set_telemetry_client()
# MLflow sets its own loggers' level when imported (after Kedro's logging.yml): warnings only.
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
# MLflow's Databricks-only run resumption imports IPython as each run starts: off elsewhere.
os.environ.setdefault("MLFLOW_ENABLE_SGC_RUN_RESUMPTION_FOR_DATABRICKS_JOBS", "false")

from kedro.config import OmegaConfigLoader  # noqa: E402

from fruits_kedro.hooks import (  # noqa: E402
    NodeTimingHooks,
    OutputSetHooks,
    ParameterValidationHooks,
    RunLogHooks,
    SparkHooks,
)
from fruits_kedro.tracking import TrackingHooks, artifact_location, tracking_uri  # noqa: E402
from fruits_kedro.verbosity import hide_known_warnings  # noqa: E402

# Kedro loads these settings before the plugins' commands, whose loading warns.
hide_known_warnings()

# Order matters: parameters are validated (and weights located) before Spark starts, and
# before old run folders are removed (hooks registered later run first). kedro-mlflow's hook
# (the [mlflow] extra) comes from its entry point; the validation runs first of all (tryfirst),
# so that a mistyped setting opens no MLflow run.
HOOKS = (TrackingHooks(), RunLogHooks(), SparkHooks(), OutputSetHooks(), ParameterValidationHooks(), NodeTimingHooks())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {
        "spark": ["spark*", "spark*/**"],
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
        "mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"],  # kedro-mlflow's own patterns
    },
    # An environment's parameters file may set one key of a section; the others keep base's values.
    "merge_strategy": {"parameters": "soft", "mlflow": "soft"},
    # mlflow.yml: the local store at the project's root, wherever a command runs from.
    "custom_resolvers": {"mlflow_tracking_uri": tracking_uri, "mlflow_artifact_location": artifact_location},
}
