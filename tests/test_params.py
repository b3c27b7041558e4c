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
    with pytest.raises(ParameterError, match=r"ingestion\.seed: missing \(conf/base/parameters_\*\.yml"):
        parse_params(parameters)
    with pytest.raises(ParameterError, match=r"orb_baseline\.n_features: missing"):
        section("orb_baseline", {k: v for k, v in params("orb_baseline").items() if k != "n_features"})


def test_a_dotted_section_key_is_refused_instead_of_ignored():
    # KedroSession.create(runtime_params={"backbone.weights": None}) does not nest the key:
    # without this check the run would silently use the default ImageNet weights.
    with pytest.raises(ParameterError, match=r"backbone\.weights: dotted keys are not split here"):
        parse_params({**base_parameters(), "backbone.weights": None, "images_root": "x"})
    assert parse_params({**base_parameters(), "images_root": "a.b"}).backbone.weights == "imagenet"


@pytest.mark.parametrize(
    ("key", "line"),
    [
        ("image_root", "Invalid parameters: image_root: not a known parameter; did you mean images_root?"),
        ("buckett", "Invalid parameters: buckett: not a known parameter; did you mean bucket?"),
        ("backbon", "Invalid parameters: backbon: not a known parameter; did you mean backbone?"),
        ("some.other", "Invalid parameters: some.other: not a known parameter; known: ingestion, backbone,"),
    ],
)
def test_an_unknown_top_level_key_is_refused_with_the_closest_known_one(key, line):
    """A typo must not run the default job: `image_root=/my/photos` would featurize the sample."""
    with pytest.raises(ParameterError) as raised:
        parse_params({**base_parameters(), key: "/my/photos"})
    assert str(raised.value).startswith(line) and "\n" not in str(raised.value)


def test_a_misspelt_key_inside_a_section_gets_the_closest_known_one():
    with pytest.raises(
        ParameterError, match=r"^Invalid parameters: ingestion\.sample_per_clas: not a known parameter; "
    ):
        parse_params(_with("ingestion", sample_per_clas=3))
    with pytest.raises(ParameterError, match=r"did you mean evaluation\.logistic_regression\.max_iter\?$"):
        section(
            "evaluation",
            {
                **params("evaluation"),
                "logistic_regression": {**params("evaluation")["logistic_regression"], "max_iters": 5},
            },
        )


def test_the_runtime_parameters_are_declared_and_checked():
    parsed = parse_params(
        {
            **base_parameters(),
            "images_root": "/photos",
            "bucket": "my-photos",
            "prefix": 2026,
            "spark_master": "local[2]",
        }
    )
    assert (parsed.images_root, parsed.bucket, parsed.prefix) == ("/photos", "my-photos", "2026")
    assert parse_params(base_parameters()).images_root is None  # not given: the catalog's default applies
    with pytest.raises(ParameterError, match=r"^Invalid parameters: images_root = None: empty; give a folder"):
        parse_params({**base_parameters(), "images_root": None})  # `--params images_root=`
    with pytest.raises(ParameterError, match=r"bucket = 'Bad_Name!': not a valid S3 bucket name"):
        parse_params({**base_parameters(), "bucket": "Bad_Name!"})
    with pytest.raises(ParameterError, match=r"bucket = 's3://b': the bucket's name only"):
        parse_params({**base_parameters(), "bucket": "s3://b"})


def test_a_runtime_parameter_the_environment_needs_is_named_before_the_catalog_is_made():
    from kedro.config import OmegaConfigLoader

    from fruits_kedro.params import check_configuration
    from fruits_kedro.settings import CONFIG_LOADER_ARGS
    from tests.conftest import PROJECT_ROOT

    for env in ("s3", "emr"):
        loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), env=env, **CONFIG_LOADER_ARGS)
        with pytest.raises(ParameterError, match=rf"^Invalid parameters: bucket is not set, and the {env} environment"):
            check_configuration(loader, env)
        loader = OmegaConfigLoader(
            str(PROJECT_ROOT / "conf"), env=env, runtime_params={"bucket": "b"}, **CONFIG_LOADER_ARGS
        )
        assert check_configuration(loader, env).bucket == "b"


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
