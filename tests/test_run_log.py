"""The project's log file: ``logs/info.log``, made where it is missing."""

from __future__ import annotations

import logging

import pytest

from fruits_kedro import run_log


@pytest.fixture(autouse=True)
def _detached():
    yield
    run_log.detach()


def test_a_project_without_logs_gets_the_folder_and_the_file(tmp_path):
    path = run_log.attach(tmp_path)
    assert path == tmp_path / "logs" / "info.log"
    logging.getLogger("fruits_kedro.test").warning("a line for the file")
    logging.getLogger("fruits_kedro.test").debug("below the file's level")
    text = path.read_text()
    assert "fruits_kedro.test - WARNING - a line for the file" in text and "below" not in text


def test_attaching_again_keeps_one_file_per_process(tmp_path):
    first, second = run_log.attach(tmp_path / "a"), run_log.attach(tmp_path / "b")
    assert run_log.attach(tmp_path / "b") == second
    assert sum(isinstance(h, run_log.RunLogHandler) for h in logging.getLogger().handlers) == 1
    logging.getLogger("fruits_kedro.test").warning("only in b")
    assert not first.exists() and "only in b" in second.read_text()


def test_a_project_where_logs_cannot_be_made_runs_without_a_log_file(tmp_path):
    (tmp_path / "logs").write_text("a file where the folder would be")
    assert run_log.attach(tmp_path) is None
    assert not any(isinstance(h, run_log.RunLogHandler) for h in logging.getLogger().handlers)
