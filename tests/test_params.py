import pytest

from fruits_kedro.params import ParameterError, parse_params, section
from tests.params import base_parameters, params


def _with(section_name: str, **overrides) -> dict:
    return {**base_parameters(), section_name: params(section_name, **overrides)}


def test_the_base_parameters_are_valid():
    parsed = parse_params(base_parameters())
    assert parsed.backbone.name == "mobilenet_v2"
    assert parsed.dimensionality_reduction.variance_threshold == 0.95


@pytest.mark.parametrize(
    ("section_name", "override", "setting"),
    [
        ("backbone", {"name": "alexnet"}, "backbone.name"),
        ("dimensionality_reduction", {"variance_threshold": 1.5}, "dimensionality_reduction.variance_threshold"),
        ("dimensionality_reduction", {"variance_threshold": 0}, "dimensionality_reduction.variance_threshold"),
        ("ingestion", {"sample_per_class": 0}, "ingestion.sample_per_class"),
        ("feature_extraction", {"batch_sise": 8}, "feature_extraction.batch_sise"),
        ("feature_extraction", {"batch_size": 0}, "feature_extraction.batch_size"),
        ("feature_extraction", {"int8_calibration_photos": 20_000}, "feature_extraction.int8_calibration_photos"),
        ("feature_extraction", {"runtime": "int8"}, "feature_extraction.runtime"),
        ("evaluation", {"feature_sets": ["mobilenet_v2@fast"]}, "evaluation.feature_sets = .*'fast' is neither"),
        ("evaluation", {"feature_sets": ["alexnet"]}, "evaluation.feature_sets = .*known: .*vgg16, orb"),
        ("evaluation", {"feature_sets": ["vgg16@100", "vgg16"]}, "evaluation.feature_sets = .*same variant"),
        ("evaluation", {"predict_backbone": "mobilenet_v2@onnx_int8"}, "evaluation.predict_backbone = .*FP32"),
        ("evaluation", {"include_orb": "sometimes"}, "evaluation.include_orb"),
    ],
)
def test_bad_settings_are_named(section_name, override, setting):
    with pytest.raises(ParameterError, match=setting.replace(".", r"\.").replace(r"\.*", ".*")):
        parse_params(_with(section_name, **override))


def test_a_missing_setting_is_named_not_defaulted():
    """conf/base/parameters_*.yml is the one source of defaults: the schema has none."""
    parameters = base_parameters()
    del parameters["ingestion"]["seed"]
    with pytest.raises(ParameterError, match=r"ingestion\.seed .*Field required"):
        parse_params(parameters)
    with pytest.raises(ParameterError, match=r"orb_baseline\.n_features .*Field required"):
        section("orb_baseline", {k: v for k, v in params("orb_baseline").items() if k != "n_features"})


def test_a_dotted_section_key_is_refused_instead_of_ignored():
    # KedroSession.create(runtime_params={"backbone.weights": None}) does not nest the key:
    # without this check the run would silently use the default ImageNet weights.
    with pytest.raises(ParameterError, match=r"backbone\.weights: dotted keys are not split here"):
        parse_params({**base_parameters(), "backbone.weights": None, "images_root": "x"})
    assert parse_params({**base_parameters(), "images_root": "a.b", "some.other": 1}).backbone.weights == "imagenet"


def test_an_environment_overrides_one_setting_and_keeps_the_others(tmp_path):
    import shutil

    from kedro.config import OmegaConfigLoader

    from fruits_kedro.settings import CONFIG_LOADER_ARGS
    from tests.conftest import PROJECT_ROOT

    shutil.copytree(PROJECT_ROOT / "conf", tmp_path / "conf")
    (tmp_path / "conf" / "local" / "parameters.yml").write_text("ingestion:\n  sample_per_class: 5\n")
    loaded = OmegaConfigLoader(str(tmp_path / "conf"), env="local", **CONFIG_LOADER_ARGS)["parameters"]
    assert loaded["ingestion"] == params("ingestion", sample_per_class=5)
    assert parse_params(loaded).ingestion.sample_per_class == 5


def test_a_pytorch_backbone_on_the_keras_runtime_is_a_parameter_error():
    # Refused before any weights are loaded or exported: the check is about the two settings.
    from fruits_kedro.params import prepare_inference

    parameters = {
        **_with("backbone", name="efficientnet_lite0"),
        "feature_extraction": params("feature_extraction", runtime="keras"),
    }
    with pytest.raises(
        ParameterError, match=r"feature_extraction\.runtime = 'keras'.*efficientnet_lite0.*onnx, onnx_int8 only"
    ):
        prepare_inference(parse_params(parameters), used_sections={"backbone", "feature_extraction"})


def test_a_gpu_provider_this_onnx_runtime_lacks_is_a_parameter_error():
    import onnxruntime as ort

    from fruits_kedro.params import prepare_inference

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this ONNX Runtime offers CUDA")
    parameters = {**base_parameters(), "feature_extraction": params("feature_extraction", execution_provider="cuda")}
    with pytest.raises(ParameterError, match=r"execution_provider = 'cuda'.*onnxruntime-gpu"):
        prepare_inference(parse_params(parameters), used_sections={"backbone", "feature_extraction"})
