"""The project's CLI commands, which ``kedro`` and ``fruits-kedro`` both pick up: ``run`` is
Kedro's own, except that the project's known errors (a parameter, missing data or weights, no
Java, an unknown pipeline or environment, S3 refusing access) end the run with their short
message and exit code 1; the full traceback goes to ``logs/errors.log``. ``--verbose`` shows
the libraries' output that a run hides by default (:mod:`fruits_kedro.verbosity`)."""

from __future__ import annotations

import atexit
import gc
import logging
import traceback
from datetime import UTC, datetime
from pathlib import Path

import click
from kedro.framework.cli.project import run as kedro_run

ERROR_LOG = Path("logs") / "errors.log"


def _known_errors() -> tuple[type[BaseException], ...]:
    from kedro.config import MissingConfigException
    from kedro.io.core import DatasetError

    from fruits_kedro.datasets.files import StorageUnavailableError
    from fruits_kedro.datasets.run_lock import RunLockedError
    from fruits_kedro.hooks import JavaNotFoundError
    from fruits_kedro.inference.weights import WeightsUnavailableError
    from fruits_kedro.ml.pca import PCAUndefinedError
    from fruits_kedro.params import ParameterError

    return (
        ParameterError,
        DatasetError,
        WeightsUnavailableError,
        JavaNotFoundError,
        MissingConfigException,
        StorageUnavailableError,
        PCAUndefinedError,
        RunLockedError,
    )


def _is_known(error: BaseException) -> bool:
    if isinstance(error, _known_errors()):
        return True
    return isinstance(error, ValueError) and str(error).startswith("Failed to find the pipeline named")


def _log_traceback(error: BaseException) -> Path:
    ERROR_LOG.parent.mkdir(parents=True, exist_ok=True)
    with ERROR_LOG.open("a", encoding="utf-8") as log:
        log.write(f"--- {datetime.now(tz=UTC).isoformat(timespec='seconds')} kedro run\n")
        log.write("".join(traceback.format_exception(error)))
    return ERROR_LOG


@click.group(name="fruits_kedro")
def cli() -> None:
    """The project's commands."""


VERBOSE = click.Option(
    ["--verbose", "-v"],
    is_flag=True,
    help="Also show TensorFlow's, Spark's and the converter's messages, and debug lines.",
)


@cli.command(
    name="run", params=[*kedro_run.params, VERBOSE], help=kedro_run.help, context_settings=kedro_run.context_settings
)
@click.pass_context
def run(ctx: click.Context, verbose: bool, **kwargs) -> None:
    from fruits_kedro import interrupts

    # The interpreter's exit needs no last garbage collection through all that the run made.
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
    if verbose:
        from fruits_kedro.verbosity import set_verbose

        set_verbose()
    try:
        with interrupts.handled():
            ctx.invoke(kedro_run, **kwargs)
    except KeyboardInterrupt as error:
        _report_interruption(ctx, error)
    except Exception as error:
        if interrupts.interrupted():  # e.g. a Spark call that the cancellation broke
            _report_interruption(ctx, error)
        if not _is_known(error):
            raise
        where = _log_traceback(error)
        logging.getLogger(__name__).debug("kedro run failed", exc_info=error)
        click.echo(f"Error: {error}\n(traceback: {where})", err=True)
        ctx.exit(1)


def _report_interruption(ctx: click.Context, error: BaseException) -> None:
    """Ctrl-C: one line, exit code 130 (128 + SIGINT); the locks of the run are released."""
    from fruits_kedro.datasets import run_lock

    _log_traceback(error)
    runs = run_lock.held_runs()
    run_lock.release_all()
    click.echo(f"Interrupted: the current outputs are unchanged{f' (run {runs[0]})' if runs else ''}", err=True)
    ctx.exit(130)
