import pytest

from fruits_kedro.params import ParameterError, parse_params


def test_defaults_are_valid():
    params = parse_params({})
    assert params.backbone.name == "mobilenet_v2"
    assert params.dimensionality_reduction.variance_threshold == 0.95


@pytest.mark.parametrize(
    ("parameters", "setting"),
    [
        ({"backbone": {"name": "alexnet"}}, "backbone.name"),
        ({"dimensionality_reduction": {"variance_threshold": 1.5}}, "dimensionality_reduction.variance_threshold"),
        ({"dimensionality_reduction": {"variance_threshold": 0}}, "dimensionality_reduction.variance_threshold"),
        ({"ingestion": {"sample_per_class": 0}}, "ingestion.sample_per_class"),
        ({"feature_extraction": {"batch_sise": 8}}, "feature_extraction.batch_sise"),
    ],
)
def test_bad_settings_are_named(parameters, setting):
    with pytest.raises(ParameterError, match=setting.replace(".", r"\.")):
        parse_params(parameters)


def test_a_dotted_section_key_is_refused_instead_of_ignored():
    # KedroSession.create(runtime_params={"backbone.weights": None}) does not nest the key:
    # without this check the run would silently use the default ImageNet weights.
    with pytest.raises(ParameterError, match=r"backbone\.weights: dotted keys are not split here"):
        parse_params({"backbone.weights": None, "images_root": "x"})
    assert parse_params({"images_root": "a.b", "some.other": 1}).backbone.weights == "imagenet"
