"""The ``fruits-kedro`` command (also ``python -m fruits_kedro``):

    fruits-kedro [run] [kedro run options]     the pipelines, as ``kedro run`` (run is the default)
    fruits-kedro predict PHOTO... [--top N]     the evaluation pipeline's classifier on photos

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
    return group


@click.command("predict", context_settings={"ignore_unknown_options": True}, add_help_option=False)
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
def predict_command(arguments: tuple[str, ...]) -> None:
    """Print the most probable fruit classes of photos (``predict --help`` for the options)."""
    from fruits_kedro.predict import main as predict

    sys.exit(predict(list(arguments)))


def main(*args, **kwargs):
    kwargs["standalone_mode"] = not hasattr(sys, "ps1")
    return cli()(*args, **kwargs)


if __name__ == "__main__":
    main()
