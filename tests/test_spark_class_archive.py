import os
import shutil
from pathlib import Path

import pytest

from fruits_kedro import spark as spark_module
from fruits_kedro import spark_class_archive


def _fake_jdk(root: Path) -> Path:
    java = root / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\n")
    java.chmod(0o755)
    return root


def test_java_options_name_the_archive_only_once_it_is_made(tmp_path):
    assert spark_class_archive.java_options(tmp_path) == []
    archive = spark_class_archive.archive_path(tmp_path)
    archive.write_bytes(b"made")
    options = spark_class_archive.java_options(tmp_path)
    assert options[0] == f"-XX:SharedArchiveFile={archive}"
    # A stale archive (another JDK build) must not stop or clutter the JVM's start.
    assert "-Xshare:auto" in options and "-Xlog:cds+dynamic=off" in options


def test_archive_name_follows_the_java_runtime(tmp_path, monkeypatch):
    here = spark_class_archive.archive_path(tmp_path)
    monkeypatch.setenv("JAVA_HOME", str(_fake_jdk(tmp_path / "other-jdk")))
    other = spark_class_archive.archive_path(tmp_path)
    assert other is not None and other != here and other.parent == here.parent
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk-here"))
    assert spark_class_archive.archive_path(tmp_path) is None


def test_archive_name_changes_when_sparks_jars_are_reinstalled(tmp_path, monkeypatch):
    """A new virtualenv at the same path has the same jars, newer: the JVM would refuse the old
    archive (it checks each jar's time), so the name must change and make builds a new one."""
    jar = tmp_path / "spark" / "jars" / "spark-core.jar"
    jar.parent.mkdir(parents=True)
    jar.write_bytes(b"classes")
    monkeypatch.setenv("SPARK_HOME", str(tmp_path / "spark"))
    before = spark_class_archive.archive_path(tmp_path)
    os.utime(jar, ns=(jar.stat().st_atime_ns, jar.stat().st_mtime_ns + 1_000_000_000))
    after = spark_class_archive.archive_path(tmp_path)
    assert after != before
    assert after.name.split("-")[-2] == before.name.split("-")[-2]  # the same installation's


def test_archive_name_changes_with_the_job_that_touches_the_classes(tmp_path, monkeypatch):
    """An archive made by an older job lacks the classes a newer one touches: make rebuilds it."""
    before = spark_class_archive.archive_path(tmp_path)

    def another_stream(spark):
        spark.range(1).count()

    monkeypatch.setattr(spark_class_archive, "_representative_stream", another_stream)
    assert spark_class_archive.archive_path(tmp_path) != before


def test_driver_options_keep_the_configured_ones_and_add_the_archive(tmp_path, monkeypatch):
    monkeypatch.setattr(spark_class_archive, "DEFAULT_DIRECTORY", str(tmp_path))
    assert spark_module._with_class_archive("-Dderby.system.home=/tmp/d") == "-Dderby.system.home=/tmp/d"
    assert spark_module._with_class_archive(None) is None
    spark_class_archive.archive_path(tmp_path).write_bytes(b"made")
    options = spark_module._with_class_archive("-Dderby.system.home=/tmp/d")
    assert options.startswith("-Dderby.system.home=/tmp/d -XX:SharedArchiveFile=")


def test_the_archive_is_made_once_maps_in_a_jvm_and_replaces_stale_ones(tmp_path):
    # The archive `make test` made before the tests (made here where it is missing).
    made = spark_class_archive.build()
    assert made == spark_class_archive.archive_path()
    assert made.stat().st_size > 10_000_000  # Spark's classes, not an empty file
    # Usable: a JVM that must share classes from it (-Xshare:on) runs a Spark job.
    spark_class_archive._in_child("--check", made, timeout=300)

    target = spark_class_archive.archive_path(tmp_path)
    shutil.copy2(made, target)
    installation = target.name.split("-")[-2]
    stale = tmp_path / f"spark-0.0.0-{installation}-0000000000000000.jsa"
    stale.write_bytes(b"this installation's, from an earlier Spark release")
    other_venv = tmp_path / "spark-4.3.0-0123abcd-0000000000000000.jsa"
    other_venv.write_bytes(b"another installation's: still in use there")
    modified = target.stat().st_mtime_ns
    # Made once: build finds it, and removes this installation's stale archive only.
    assert spark_class_archive.build(tmp_path) == target and target.stat().st_mtime_ns == modified
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, other_venv.name])


def test_a_corrupt_archive_is_refused_by_the_check_not_installed(tmp_path):
    garbage = tmp_path / "garbage.jsa"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(RuntimeError, match="--check"):
        spark_class_archive._in_child("--check", garbage, timeout=300)
