"""The README's set-up commands fail clearly, not with a stack trace, when Java is missing."""

import shutil
import subprocess

from tests.conftest import PROJECT_ROOT


def test_make_without_java_says_how_to_install_it(tmp_path):
    make = shutil.which("make")
    empty_path = tmp_path / "bin"
    empty_path.mkdir()  # a PATH on which no java can be found
    result = subprocess.run(
        [make, "-s", "-C", str(PROJECT_ROOT), "check-java"],
        env={"PATH": str(empty_path), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "Java was not found" in result.stderr and "openjdk-17" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_make_accepts_this_machines_java():
    result = subprocess.run(
        [shutil.which("make"), "-s", "-C", str(PROJECT_ROOT), "check-java"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
