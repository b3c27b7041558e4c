"""Bytecode in PySpark's zip, for the Python processes Spark starts from it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

from fruits_kedro.pyspark_bytecode import add_bytecode, has_bytecode, installed_zip


def _imported_from(archive, module: str) -> tuple[str, str]:
    """``module``'s file and its ``x``, imported in a new Python with ``archive`` first on its path."""
    code = f"import sys;sys.path.insert(0, {str(archive)!r}); import {module} as m; print(m.__file__, vars(m).get('x'))"
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True).stdout
    file, _, x = out.strip().partition(" ")
    return file, x


def test_the_installed_pysparks_zip_gets_bytecode_that_python_imports_once(tmp_path):
    archive = tmp_path / "pyspark.zip"
    with zipfile.ZipFile(installed_zip()) as installed, zipfile.ZipFile(archive, "w") as copy:
        for info in installed.infolist():  # as pip installs it (`make` may have added bytecode)
            if not info.filename.endswith(".pyc"):
                copy.writestr(info, installed.read(info))
    for py4j in installed_zip().parent.glob("py4j-*.zip"):
        shutil.copy(py4j, tmp_path)
    assert not has_bytecode(archive)

    assert add_bytecode(archive) is True
    with zipfile.ZipFile(archive) as added:
        names = set(added.namelist())
    assert {"pyspark/daemon.pyc", "pyspark/sql/worker/create_data_source.pyc"} <= names
    assert not any("/tests/" in name and name.endswith(".pyc") for name in names)  # never imported by a run
    assert _imported_from(archive, "pyspark.daemon")[0] == f"{archive}/pyspark/daemon.pyc"
    code = f"import sys;sys.path.insert(0, {str(archive)!r})\nimport pyspark.daemon as d\n"
    code += "print(d.manager.__code__.co_filename)"
    traced = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True).stdout
    assert traced.strip() == f"{archive}/pyspark/daemon.py"  # what a traceback names

    written = archive.stat().st_mtime_ns
    assert add_bytecode(archive) is False and archive.stat().st_mtime_ns == written


def test_bytecode_left_behind_by_an_edit_of_its_source_is_not_used(tmp_path):
    archive = tmp_path / "modules.zip"
    with zipfile.ZipFile(archive, "w") as new:
        new.writestr("pyspark/__init__.py", "")
        new.writestr("pyspark/m.py", "x = 1\n")
    assert add_bytecode(archive, probe=("pyspark.m",)) is True
    assert _imported_from(archive, "pyspark.m") == (f"{archive}/pyspark/m.pyc", "1")

    edited = tmp_path / "edited.zip"
    with zipfile.ZipFile(archive) as old, zipfile.ZipFile(edited, "w") as new:
        for info in old.infolist():
            new.writestr(info, b"x = 2\n" if info.filename == "pyspark/m.py" else old.read(info))
    assert _imported_from(edited, "pyspark.m")[1] == "2"  # compiled from the new source, not the old bytecode
