"""One schema for every parameter of the project, checked before a run starts Spark.

Each error names the setting as a user would pass it with ``--params`` (e.g.
``dimensionality_reduction.variance_threshold``), so a typo costs seconds, not a cluster run.
The schema holds constraints only: every default is in ``conf/base/parameters_*.yml``.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from fruits_kedro.inference.onnx_export import inference_payload
from fruits_kedro.inference.registry import BACKBONES, VariantError, get_backbone, parse_variants, resolve_input_size
from fruits_kedro.inference.runtime import ProviderUnavailableError, execution_providers, resolve_runtime


class ParameterError(ValueError):
    """A parameter has a value the project cannot run with."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IngestionParams(_Section):
    sample_per_class: int | None = Field(gt=0, description="Images kept per (split, class); null keeps all")
    seed: int
    extensions: list[str]
    images_per_partition: int = Field(gt=0)
    max_file_bytes: int | None = Field(gt=0)
    unsplit_folders: Literal["keep", "exclude"]

    @field_validator("extensions")
    @classmethod
    def _lower_dotted(cls, value: list[str]) -> list[str]:
        return [e.lower() if e.startswith(".") else f".{e.lower()}" for e in value]


class BackboneParams(_Section):
    name: str
    input_size: int | None = Field(ge=32, le=1024)
    weights: str | None

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in BACKBONES:
            raise ValueError(f"unknown backbone {value!r}; known: {', '.join(sorted(BACKBONES))}")
        return value


class PreprocessingParams(_Section):
    max_image_pixels: int = Field(gt=0, description="Decompression-bomb limit (Pillow's default)")
    background: tuple[int, int, int]


class FeatureExtractionParams(_Section):
    runtime: Literal["auto", "keras", "onnx", "onnx_int8"]
    # Decoded on the driver (150 KB a photo at 224 px); a few hundred calibrate well.
    int8_calibration_photos: int = Field(gt=0, le=10_000)
    execution_provider: Literal["auto", "cpu", "cuda", "tensorrt"]
    incremental: bool
    batch_size: int | None = Field(gt=0, le=4096)
    threads_per_task: int | None = Field(gt=0)
    read_retry_seconds: float = Field(ge=0.0, le=3600.0)


class DimensionalityReductionParams(_Section):
    variance_threshold: float = Field(gt=0.0, le=1.0)
    max_components: int | None = Field(gt=0)


class StreamingParams(_Section):
    trigger: Literal["available_now", "processing_time"]
    interval_seconds: float = Field(gt=0.0, le=86400.0, description="processing_time: seconds between triggers")
    max_files_per_trigger: int = Field(gt=0)
    refit_growth: float = Field(gt=0.0)
    refit_min_rows: int = Field(ge=1)
    compact_parts: int = Field(ge=2)
    compact_rows: int = Field(ge=1)


class OrbBaselineParams(_Section):
    image_size: int = Field(ge=32, le=2048)
    contrast: Literal["clahe", "equalize", "none"]
    clahe_clip_limit: float = Field(gt=0)
    clahe_tile_grid: int = Field(gt=0)
    denoise: Literal["median", "nlmeans", "none"]
    median_kernel: int = Field(ge=3)
    nlmeans_strength: float = Field(gt=0)
    blur_kernel: int = Field(ge=0, description="Odd Gaussian kernel; 0 skips the blur")
    n_features: int = Field(gt=0)
    fast_threshold: int = Field(gt=0, le=255)
    edge_threshold: int = Field(ge=0)
    patch_size: int = Field(ge=2)
    vocabulary_size: int = Field(ge=2)
    vocabulary_sample_size: int = Field(gt=0)
    kmeans_max_iter: int = Field(gt=0)
    seed: int

    @field_validator("median_kernel", "blur_kernel")
    @classmethod
    def _odd(cls, value: int) -> int:
        # OpenCV's median and Gaussian filters need a centre pixel.
        if value and value % 2 == 0:
            raise ValueError(f"must be odd, got {value}")
        return value


class LogisticRegressionParams(_Section):
    max_iter: int = Field(gt=0)
    reg_param: float = Field(ge=0)
    elastic_net_param: float = Field(ge=0, le=1)


class EvaluationParams(_Section):
    input_size: int | None = Field(ge=32, le=1024)  # before feature_sets, whose check reads it
    feature_sets: list[str]
    include_orb: bool
    weights: str | None
    predict_backbone: str
    logistic_regression: LogisticRegressionParams

    @field_validator("feature_sets")
    @classmethod
    def _known_and_unique(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if not value:
            raise ValueError("list at least one feature set")
        if len(set(value)) != len(value):
            raise ValueError(f"feature sets are listed more than once: {value}")
        try:
            parse_variants([spec for spec in value if spec != "orb"], default_input_size=info.data.get("input_size"))
        except VariantError as exc:
            raise ValueError(f"{exc}{', orb' if 'unknown backbone' in str(exc) else ''}") from None
        return value

    @field_validator("predict_backbone")
    @classmethod
    def _known(cls, value: str) -> str:
        try:
            (variant,) = parse_variants([value])
        except VariantError as exc:
            raise ValueError(str(exc)) from None
        if variant.runtime == "onnx_int8":
            raise ValueError(f"{value!r}: predict and serve run the FP32 model; name a variant without @onnx_int8")
        return value


def _as_text(value: Any) -> Any:
    # `--params prefix=2026` arrives as a number; the catalog uses it as text.
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


RuntimeText = Annotated[str | None, BeforeValidator(_as_text)]

# What each runtime parameter is, for the error when it is given empty.
RUNTIME_EXAMPLES = {
    "images_root": "a folder of <Split>/<Class>/*.jpg, e.g. images_root=data/01_raw/fruits",
    "bucket": "an S3 bucket's name, e.g. bucket=my-photos",
    "prefix": "the folder in the bucket, e.g. prefix=fruits (the default)",
    "spark_master": "e.g. spark_master=spark://127.0.0.1:7077 (default local[*,4])",
}
# The names botocore accepts (its own check prints its regexes in a long traceback).
BUCKET_NAME = re.compile(r"[a-zA-Z0-9.\-_]{1,255}")


class ProjectParams(BaseModel):
    # Every key is known: a misspelt one (image_root) would otherwise be ignored and the run
    # would go on with the default it meant to replace.
    model_config = ConfigDict(extra="forbid")

    ingestion: IngestionParams
    backbone: BackboneParams
    preprocessing: PreprocessingParams
    feature_extraction: FeatureExtractionParams
    dimensionality_reduction: DimensionalityReductionParams
    orb_baseline: OrbBaselineParams
    evaluation: EvaluationParams
    streaming: StreamingParams

    # Runtime parameters (`kedro run --params images_root=...`), read by conf/*/catalog.yml and
    # spark.yml as ${runtime_params:...}, whose defaults are there: None here means "not given".
    images_root: RuntimeText = None
    bucket: RuntimeText = None
    prefix: RuntimeText = None
    spark_master: RuntimeText = None

    @field_validator(*RUNTIME_EXAMPLES)
    @classmethod
    def _not_empty(cls, value: str | None, info) -> str | None:
        # Only given values get here: `images_root=` on the command line arrives as None.
        if value is None or not value.strip():
            raise ValueError(f"empty; give {RUNTIME_EXAMPLES[info.field_name]}")
        return value

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        if value.startswith("s3://") or "/" in value:
            raise ValueError("the bucket's name only (no s3://, no /): put the folder in prefix=...")
        if not BUCKET_NAME.fullmatch(value):
            raise ValueError("not a valid S3 bucket name (lowercase letters, digits, dots and hyphens)")
        return value

    @model_validator(mode="before")
    @classmethod
    def _no_dotted_section_keys(cls, data: Any) -> Any:
        # `kedro run --params backbone.weights=null` nests the key; runtime_params given to
        # KedroSession.create(...) are taken as written, so {"backbone.weights": None} would be
        # a new top-level parameter that nothing reads, and the run would use the default.
        if isinstance(data, dict):
            dotted = sorted(k for k in data if isinstance(k, str) and k.split(".")[0] in cls.model_fields and "." in k)
            if dotted:
                raise ValueError(
                    f"{', '.join(dotted)}: dotted keys are not split here; nest them, e.g. "
                    f"{{'backbone': {{'weights': None}}}} (only `kedro run --params` splits dots)"
                )
        return data


def _format(error: ValidationError, section: str | None = None) -> str:
    lines = []
    for item in error.errors():
        loc = ((section,) if section else ()) + tuple(str(p) for p in item["loc"])
        setting = ".".join(loc)
        if item["type"] == "extra_forbidden":
            lines.append(f"{setting}: not a known parameter{_suggestion(loc)}")
            continue
        if item["type"] == "missing":  # its input is the enclosing section: not worth printing
            lines.append(f"{setting}: missing (conf/base/parameters_*.yml holds every default)")
            continue
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{setting} = {item.get('input')!r}: {message}" if setting else message)
    if len(lines) == 1:
        return f"Invalid parameters: {lines[0]}"
    return "Invalid parameters:\n" + "\n".join(f"  - {line}" for line in lines)


def _suggestion(loc: tuple[str, ...]) -> str:
    """``; did you mean <the closest known key>?`` for an unknown key at ``loc``."""
    model: type[BaseModel] = ProjectParams
    for part in loc[:-1]:
        field = model.model_fields.get(part)
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return ""
        model = field.annotation
    close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1)
    if close:
        return f"; did you mean {'.'.join((*loc[:-1], close[0]))}?"
    return f"; known: {', '.join(model.model_fields)}"


def section(name: str, values: dict[str, Any]) -> Any:
    """The parameters of one section (``params:<name>``), checked against the schema; errors
    name the setting as ``<name>.<setting>``. Nodes read their settings through this."""
    model = ProjectParams.model_fields[name].annotation
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise ParameterError(_format(exc, name)) from None


def parse_params(parameters: dict[str, Any]) -> ProjectParams:
    try:
        return ProjectParams.model_validate(parameters or {})
    except ValidationError as exc:
        raise ParameterError(_format(exc)) from None


def check_configuration(config_loader, env: str | None) -> ProjectParams:
    """The parameters, then the runtime parameters the environment's configuration needs
    (``--env s3`` reads ``${runtime_params:bucket}``): checked before the catalog is made,
    so a missing one is named instead of failing as an interpolation error."""
    from kedro.config import MissingConfigException
    from omegaconf.errors import InterpolationResolutionError

    params = parse_params(config_loader["parameters"])
    for key in ("catalog", "spark"):
        try:
            config_loader[key]
        except MissingConfigException:
            continue
        except InterpolationResolutionError as exc:
            missing = re.search(r"Runtime parameter '([^']+)' not found", str(exc))
            if missing is None:
                raise
            name = missing.group(1)
            hint = f"; {RUNTIME_EXAMPLES[name]}" if name in RUNTIME_EXAMPLES else ""
            raise ParameterError(
                f"Invalid parameters: {name} is not set, and the {env or 'local'} environment needs it "
                f"(kedro run --env {env or 'local'} --params {name}=...{hint})"
            ) from None
    return params


def prepare_inference(params: ProjectParams, used_sections: set[str]) -> None:
    """When the run extracts features, prepare what the executors will run (the weights, or
    the ONNX model), so that missing weights fail before Spark starts.

    The feature-extraction node finds it in the per-process cache.
    """
    if "backbone" in used_sections and "feature_extraction" in used_sections:
        backbone = get_backbone(params.backbone.name)
        runtime = params.feature_extraction.runtime
        if runtime == "auto":
            try:
                runtime = resolve_runtime(runtime, params.feature_extraction.execution_provider)
            except ProviderUnavailableError as exc:
                raise ParameterError(f"Invalid parameters:\n  - {exc}") from None
        if runtime not in backbone.runtimes:
            raise ParameterError(
                f"Invalid parameters: feature_extraction.runtime = {runtime!r}: backbone.name "
                f"{backbone.name!r} is a {backbone.framework} network and runs on {', '.join(backbone.runtimes)} only"
            )
        if runtime != "keras":
            try:
                execution_providers(params.feature_extraction.execution_provider)
            except ProviderUnavailableError as exc:
                raise ParameterError(f"Invalid parameters: {exc}") from None
        size = resolve_input_size(backbone, params.backbone.input_size)
        inference_payload(backbone, size, params.backbone.weights, runtime)
