"""fruits_kedro: fruit photos to compact CNN features with PySpark and Kedro."""

__version__ = "0.1.0"
