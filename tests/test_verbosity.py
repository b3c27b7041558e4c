"""What a run hides unless ``--verbose``: native stderr lines and the converter's known warnings."""

from __future__ import annotations

import logging
import os
import warnings

import pytest

from fruits_kedro.verbosity import VERBOSE_ENV, library_noise_hidden, set_verbose


@pytest.fixture
def quiet(monkeypatch):
    monkeypatch.delenv(VERBOSE_ENV, raising=False)


def test_native_stderr_lines_and_known_warnings_are_hidden(quiet, capfd, caplog):
    with caplog.at_level(logging.INFO, logger="tensorflow"):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with library_noise_hidden():
                os.write(2, b"I0000 port.cc:153] oneDNN custom operations are on\n")
                logging.getLogger("tensorflow").warning(
                    "From tf_loader.py: convert_variables_to_constants is deprecated"
                )
                warnings.warn("`input_shape` is undefined or non-square", UserWarning, stacklevel=1)
            warnings.warn("an unrelated warning", UserWarning, stacklevel=1)
        logging.getLogger("tensorflow").warning("after the block")
    assert "oneDNN" not in capfd.readouterr().err
    assert [r.getMessage() for r in caplog.records] == ["after the block"]
    assert [str(w.message) for w in seen] == ["an unrelated warning"]


def test_what_was_hidden_is_shown_when_the_block_fails(quiet, capfd):
    with pytest.raises(RuntimeError), library_noise_hidden():
        os.write(2, b"native reason of the failure\n")
        raise RuntimeError("conversion failed")
    assert "native reason of the failure" in capfd.readouterr().err


def test_verbose_hides_nothing(monkeypatch, capfd):
    monkeypatch.setenv(VERBOSE_ENV, "")
    for name in ("tensorflow", "fruits_kedro"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.getLogger(name).level)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    set_verbose()
    assert os.environ[VERBOSE_ENV] == "1" and os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    assert logging.getLogger("tensorflow").level == logging.INFO
    assert logging.getLogger("fruits_kedro").level == logging.DEBUG
    with library_noise_hidden():
        os.write(2, b"oneDNN custom operations are on\n")
    assert "oneDNN" in capfd.readouterr().err


def test_known_library_warnings_are_dropped_from_the_log_and_others_kept(caplog):
    from fruits_kedro.verbosity import hide_known_warnings

    hide_known_warnings()
    hide_known_warnings()  # once is enough: a second call adds no second filter
    py_warnings = logging.getLogger("py.warnings")
    assert len([f for f in py_warnings.filters if getattr(f, "__name__", "") == "_not_known_warning"]) == 1
    with caplog.at_level(logging.WARNING, logger="py.warnings"):
        py_warnings.warning("model.py:187: UserWarning: \x1b[33mAdd type hints to the `predict` method to enable ...")
        py_warnings.warning("pandas.py:1: FutureWarning: a real change ahead")
    assert [r.getMessage() for r in caplog.records] == ["pandas.py:1: FutureWarning: a real change ahead"]
