"""The ``fruits-kedro`` command (also ``python -m fruits_kedro``):

    fruits-kedro [run] [kedro run options]     the pipelines, as ``kedro run`` (run is the default)
    fruits-kedro predict PHOTO... [--top N]     the evaluation pipeline's classifier on photos
    fruits-kedro serve [--host H] [--port P]    the same classifier over HTTP, with a page

``main`` is also the entry point ``spark-submit`` uses for a packaged project (kedro run options).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

PACKAGE_NAME = Path(__file__).parent.name


class _RunByDefault(click.Group):
    """A group whose default command is ``run``: ``fruits-kedro --env s3`` is ``kedro run --env s3``.
    The project (settings, logging) is configured for ``run`` only: ``predict`` prints results alone."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.list_commands(ctx) and args[0] not in ("--help", "-h")):
            args = ["run", *args]
        return super().parse_args(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({"run", *self.commands})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name == "run":
            from kedro.framework.cli.utils import find_run_command
            from kedro.framework.project import configure_project

            configure_project(PACKAGE_NAME)
            return find_run_command(PACKAGE_NAME)
        return super().get_command(ctx, name)


def cli() -> click.Group:
    group = _RunByDefault(name="fruits-kedro", help="The pipelines (run, the default) and the classifier (predict).")
    group.add_command(predict_command)
    group.add_command(serve_command)
    return group


@click.command("predict", context_settings={"ignore_unknown_options": True}, add_help_option=False)
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
def predict_command(arguments: tuple[str, ...]) -> None:
    """Print the most probable fruit classes of photos (``predict --help`` for the options)."""
    from fruits_kedro.predict import main as predict

    sys.exit(predict(list(arguments)))


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on (0.0.0.0: every one)")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--env", default=None, help="Kedro configuration environment (default: local)")
@click.option("--params", default="", help="runtime parameters, as kedro run's: bucket=B,prefix=P")
@click.option("--project-path", default=".", show_default=True, help="Kedro project root")
@click.option(
    "--max-upload-mb",
    default=20.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="largest photo file accepted (413 beyond)",
)
@click.option(
    "--max-pixels",
    default=40_000_000,
    show_default=True,
    type=click.IntRange(min=1),
    help="most pixels (width x height) of a photo decoded, a phone photo's (413 beyond)",
)
@click.option(
    "--max-decodes",
    default=2,
    show_default=True,
    type=click.IntRange(min=1),
    help="photos decoded at once; each takes up to ~8 bytes per pixel while it is decoded",
)
@click.option(
    "--max-queued",
    default=32,
    show_default=True,
    type=click.IntRange(min=0),
    help="requests waiting for a decode (429 beyond)",
)
def serve_command(
    host: str,
    port: int,
    env: str | None,
    params: str,
    project_path: str,
    max_upload_mb: float,
    max_pixels: int,
    max_decodes: int,
    max_queued: int,
) -> None:
    """Serve the evaluation pipeline's classifier: POST /predict, GET / (a page), GET /health."""
    from fruits_kedro.ml.exported_classifier import ClassifierUnavailableError
    from fruits_kedro.serve import ServeLimits, serve

    runtime_params = dict(item.split("=", 1) for item in params.split(",") if "=" in item)
    limits = ServeLimits(
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        max_pixels=max_pixels,
        max_decodes=max_decodes,
        max_queued=max_queued,
    )
    try:
        serve(host, port, project_path=project_path, env=env, params=runtime_params, limits=limits)
    except (ClassifierUnavailableError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None


def main(*args, **kwargs):
    kwargs["standalone_mode"] = not hasattr(sys, "ps1")
    return cli()(*args, **kwargs)


if __name__ == "__main__":
    main()
