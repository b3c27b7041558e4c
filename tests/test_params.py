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
