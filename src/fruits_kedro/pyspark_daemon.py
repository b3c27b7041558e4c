"""PySpark's Python worker daemon, importing the installed PySpark instead of its zip.

Spark puts ``$SPARK_HOME/python/lib/pyspark.zip``, py4j's zip and the spark-core jar at the
head of every Python worker's ``PYTHONPATH``. With a pip-installed PySpark, ``SPARK_HOME``
is the installed package itself: the zip holds the same modules as the package, but no
bytecode, so each worker compiled PySpark from source at the start of every run, while the
first CNN tasks waited, and re-read the three archives' directories.

Named by ``spark.python.daemon.module`` (``conf/base/spark.yml``), this module drops from
``sys.path`` the archives that ship inside the installed ``pyspark`` package (the same
release, by construction), then runs PySpark's own daemon; the workers it forks inherit
the path. Anywhere else (a cluster's Spark under ``/usr/lib/spark``, archives from another
install) the path is left as it is.

It imports nothing but the standard library before forking: PySpark's daemon imports the
worker's modules only after each fork, because some (pandas, pyarrow) start threads at import.

A reused worker collects garbage after every task, while its next task waits; once its
first task has imported the modules and built the model it keeps, the objects it holds then
are frozen (``gc.freeze``), so that each later collection scans only what came after.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable

ARCHIVE_SUFFIXES = (".zip", ".jar")


def without_bundled_archives(path: list[str]) -> list[str]:
    """``path`` without the archives inside the first installed ``pyspark`` package on it."""
    package = next(
        (
            os.path.join(entry or os.curdir, "pyspark")
            for entry in path
            if not entry.endswith(ARCHIVE_SUFFIXES)
            and os.path.isfile(os.path.join(entry or os.curdir, "pyspark", "__init__.py"))
        ),
        None,
    )
    if package is None:
        return list(path)
    inside = os.path.realpath(package) + os.sep
    return [e for e in path if not (e.endswith(ARCHIVE_SUFFIXES) and os.path.realpath(e).startswith(inside))]


def freezing_after_first_task(worker: Callable[..., int]) -> Callable[..., int]:
    """PySpark's per-task ``worker`` function, with the worker's objects frozen after its first task."""
    frozen = False

    def run_task(*args, **kwargs) -> int:
        nonlocal frozen
        code = worker(*args, **kwargs)
        if not frozen:
            gc.collect()  # the first task's garbage, before the rest is frozen
            gc.freeze()
            frozen = True
        return code

    return run_task


def main() -> None:
    kept = without_bundled_archives(sys.path)
    for entry in set(sys.path) - set(kept):
        # Their zip importers are cached too; a worker's first task would re-read them.
        sys.path_importer_cache.pop(entry, None)
    sys.path[:] = kept

    from pyspark import daemon

    daemon.worker = freezing_after_first_task(daemon.worker)
    daemon.manager()


if __name__ == "__main__":
    main()
