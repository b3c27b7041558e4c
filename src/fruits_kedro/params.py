"""One schema for every parameter of the project, checked before a run starts Spark.

Each error names the setting as a user would pass it with ``--params`` (e.g.
``dimensionality_reduction.variance_threshold``), so a typo costs seconds, not a cluster run.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fruits_kedro.backbones import BACKBONES, get_backbone, load_weights, resolve_input_size


class ParameterError(ValueError):
    """A parameter has a value the project cannot run with."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IngestionParams(_Section):
    sample_per_class: int | None = Field(None, gt=0, description="Images kept per (split, class); null keeps all")
    seed: int = 42
    extensions: list[str] = [".jpg", ".jpeg", ".png"]
    images_per_partition: int = Field(256, gt=0)

    @field_validator("extensions")
    @classmethod
    def _lower_dotted(cls, value: list[str]) -> list[str]:
        return [e.lower() if e.startswith(".") else f".{e.lower()}" for e in value]


class BackboneParams(_Section):
    name: str = "mobilenet_v2"
    input_size: int | None = Field(None, ge=32, le=1024)
    weights: str | None = "imagenet"

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in BACKBONES:
            raise ValueError(f"unknown backbone {value!r}; known: {', '.join(sorted(BACKBONES))}")
        return value


class PreprocessingParams(_Section):
    max_image_pixels: int = Field(89_478_485, gt=0, description="Decompression-bomb limit (Pillow's default)")
    background: tuple[int, int, int] = (255, 255, 255)


class FeatureExtractionParams(_Section):
    runtime: Literal["keras", "onnx"] = "keras"
    batch_size: int = Field(64, gt=0, le=4096)
    threads_per_task: int | None = Field(None, gt=0)


class DimensionalityReductionParams(_Section):
    variance_threshold: float = Field(0.95, gt=0.0, le=1.0)
    max_components: int | None = Field(None, gt=0)


class ProjectParams(BaseModel):
    model_config = ConfigDict(extra="allow")  # other pipelines own other sections

    ingestion: IngestionParams = IngestionParams()
    backbone: BackboneParams = BackboneParams()
    preprocessing: PreprocessingParams = PreprocessingParams()
    feature_extraction: FeatureExtractionParams = FeatureExtractionParams()
    dimensionality_reduction: DimensionalityReductionParams = DimensionalityReductionParams()


def _format(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        setting = ".".join(str(p) for p in item["loc"])
        given = item.get("input")
        lines.append(f"  - {setting} = {given!r}: {item['msg']}")
    return "Invalid parameters:\n" + "\n".join(lines)


def parse_params(parameters: dict[str, Any]) -> ProjectParams:
    try:
        return ProjectParams.model_validate(parameters or {})
    except ValidationError as exc:
        raise ParameterError(_format(exc)) from None


def validate_run(parameters: dict[str, Any], used_sections: set[str]) -> ProjectParams:
    """Validate the parameters; locate the backbone's weights when the run needs them."""
    params = parse_params(parameters)
    if "backbone" in used_sections and "feature_extraction" in used_sections:
        backbone = get_backbone(params.backbone.name)
        load_weights(backbone, resolve_input_size(backbone, params.backbone.input_size), params.backbone.weights)
    return params
