"""Bytecode inside the installed PySpark's ``pyspark.zip``, for the Python processes Spark starts.

Spark puts ``$SPARK_HOME/python/lib/pyspark.zip`` at the head of the ``PYTHONPATH`` of every
Python process it starts; with a pip-installed PySpark, that zip sits inside the installed
package and holds the same modules as the package, but no bytecode, and Python cannot write
bytecode into a zip: each process compiles the PySpark modules it imports. The project's
task workers leave the zip aside (:mod:`fruits_kedro.pyspark_daemon`), but the processes
Spark starts for Python data sources (looking them up, reading their schema, planning a
read) and a streaming source's runner name their module themselves, and each run starts
them anew.

``make`` (``python -m fruits_kedro.pyspark_bytecode``) adds each module's bytecode to the
zip once, beside its source. The bytecode is checked against the source's hash at each
import (Python's hash-based ``.pyc``), so a stale file is never used: an edited or upgraded
zip falls back to compiling, as before. A zip that is not inside the installed ``pyspark``
package (a cluster's Spark, e.g. ``/usr/lib/spark`` on EMR) is left as it is; so is one
that already holds this Python's bytecode. The zip is replaced in one step, but a Python
process that has read the old zip's index cannot import from the new one: it is rewritten
before a run (``make run``, ``make test``), not while a Spark session uses it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

# PySpark's own test suites: no process of a run imports them.
_NEVER_IMPORTED = re.compile(r"/tests/")
# The modules whose import from the zip proves it usable: the daemon and workers Spark starts.
_PROBE_MODULES = ("pyspark.daemon", "pyspark.worker", "pyspark.sql.worker.create_data_source")


def installed_zip() -> Path | None:
    """The ``pyspark.zip`` inside the installed ``pyspark`` package, or None (no such file)."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "python" / "lib" / "pyspark.zip"
    return path if path.is_file() else None


def has_bytecode(archive: Path) -> bool:
    """Whether ``archive`` holds this Python's bytecode of its ``pyspark/__init__.py``, made
    for this place (its tracebacks name the zip's source)."""
    import marshal

    with zipfile.ZipFile(archive) as source:
        try:
            data = source.read("pyspark/__init__.pyc")
        except KeyError:
            return False
    if data[:4] != importlib.util.MAGIC_NUMBER:
        return False
    code = marshal.loads(data[16:])  # after the magic number, the flags and the source's hash
    return code.co_filename == f"{archive}/pyspark/__init__.py"


def add_bytecode(archive: Path, *, probe: tuple[str, ...] = _PROBE_MODULES) -> bool:
    """Add to ``archive`` the bytecode of each of its modules, checked against the source's
    hash; returns False when it already held this Python's bytecode. The new archive replaces
    the old one atomically, once the ``probe`` modules were imported from it by a new Python
    process; a module that does not compile keeps its source only."""
    archive = Path(archive)
    if has_bytecode(archive):
        return False
    partial = archive.with_name(f".{archive.name}.{os.getpid()}.partial")
    try:
        _write_with_bytecode(archive, partial)
        _check(partial, probe)
        os.replace(partial, archive)  # atomic: a process starting meanwhile reads one or the other
    finally:
        partial.unlink(missing_ok=True)
    return True


def _write_with_bytecode(archive: Path, target: Path) -> None:
    import compileall
    import py_compile
    import tempfile
    import warnings

    with tempfile.TemporaryDirectory() as folder, zipfile.ZipFile(archive) as source:
        sources = [info for info in source.infolist() if info.filename.endswith(".py")]
        source.extractall(folder, members=sources)
        # legacy: module.pyc beside module.py, where zipimport looks for it
        with warnings.catch_warnings():  # PySpark's own code's warnings are not the user's
            warnings.simplefilter("ignore")
            compileall.compile_dir(
                folder,
                ddir=str(archive),  # tracebacks name the zip's source, as without the bytecode
                quiet=2,
                legacy=True,
                rx=_NEVER_IMPORTED,
                invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
            )
        with zipfile.ZipFile(target, "w") as out:
            for info in source.infolist():
                if info.filename.endswith(".pyc"):
                    continue  # another Python's: replaced by this one's
                out.writestr(info, source.read(info))
                compiled = Path(folder, info.filename + "c")
                if info.filename.endswith(".py") and compiled.is_file():  # a module that does not compile has none
                    pyc = zipfile.ZipInfo(info.filename + "c", date_time=info.date_time)
                    pyc.compress_type = info.compress_type
                    out.writestr(pyc, compiled.read_bytes())


def _check(archive: Path, modules: tuple[str, ...]) -> None:
    """Import ``modules`` from ``archive`` alone, in a new Python process, from its bytecode."""
    code = (
        "import importlib, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    module = importlib.import_module(name)\n"
        "    assert module.__file__.endswith('.pyc'), module.__file__\n"
    )
    path = [str(archive), *(str(p) for p in sorted(archive.parent.glob("py4j-*.zip")))]
    completed = subprocess.run(  # -I: no PYTHONPATH, no current folder; the archives first, as Spark puts them
        [sys.executable, "-I", "-c", f"import sys\nsys.path[:0] = {path!r}\n{code}"],
        capture_output=True,
        text=True,
        cwd=archive.parent,
        timeout=300,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"PySpark did not import from {archive} with its bytecode:\n{completed.stderr[-3000:]}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("archive", nargs="?", help="a pyspark.zip (default: the installed PySpark's)")
    args = parser.parse_args(argv)
    archive = Path(args.archive) if args.archive else installed_zip()
    if archive is None:
        print("No pyspark.zip inside the installed PySpark: nothing to do.")
        return
    added = add_bytecode(archive)
    print(f"{archive}: {'bytecode added' if added else 'already holds this Python’s bytecode'}.")


if __name__ == "__main__":
    main()
