"""Run the project as a package: ``python -m fruits_kedro`` or the ``fruits-kedro`` script
(``kedro run`` options), or ``fruits-kedro predict PHOTO...`` to classify photos.

This is also the entry point that ``spark-submit`` uses for a packaged project.
"""

from __future__ import annotations

import sys
from pathlib import Path

from kedro.framework.cli.utils import find_run_command
from kedro.framework.project import configure_project


def main(*args, **kwargs):
    # `fruits-kedro predict PHOTO...`: the mobile app's use case, one photo at a time.
    if not args and len(sys.argv) > 1 and sys.argv[1] == "predict":
        from fruits_kedro.predict import main as predict

        sys.exit(predict(sys.argv[2:]))
    package_name = Path(__file__).parent.name
    configure_project(package_name)
    interactive = hasattr(sys, "ps1")
    kwargs["standalone_mode"] = not interactive
    run = find_run_command(package_name)
    return run(*args, **kwargs)


if __name__ == "__main__":
    main()
