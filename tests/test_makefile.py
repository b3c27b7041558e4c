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


def _checkout_with_shared_weights(root):
    """A checkout (its Makefile) with the team's ../shared/keras/models beside it."""
    checkout = root / "checkout"
    checkout.mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "Makefile", checkout / "Makefile")
    models = root / "shared" / "keras" / "models"
    models.mkdir(parents=True)
    (models / "weights.h5").write_bytes(b"weights")
    return checkout, models / "weights.h5"


def _make_weights(checkout, home):
    return subprocess.run(
        [shutil.which("make"), "-s", "-C", str(checkout), "weights", f"HOME={home}"],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_make_weights_replaces_the_link_of_a_removed_checkout(tmp_path):
    checkout, weights = _checkout_with_shared_weights(tmp_path)
    cache = tmp_path / "home" / ".keras" / "models"
    cache.mkdir(parents=True)
    (cache / "weights.h5").symlink_to(tmp_path / "removed-checkout" / "shared" / "keras" / "models" / "weights.h5")
    (cache / "other.h5").symlink_to(tmp_path / "gone.h5")  # not a shared file: left as it is

    result = _make_weights(checkout, tmp_path / "home")

    assert result.returncode == 0, result.stderr
    assert (cache / "weights.h5").resolve() == weights.resolve()
    assert (cache / "weights.h5").read_bytes() == b"weights"
    assert (cache / "other.h5").is_symlink()


def test_make_weights_keeps_a_file_of_the_users_own(tmp_path):
    checkout, _ = _checkout_with_shared_weights(tmp_path)
    cache = tmp_path / "home" / ".keras" / "models"
    cache.mkdir(parents=True)
    (cache / "weights.h5").write_bytes(b"downloaded by keras")

    assert _make_weights(checkout, tmp_path / "home").returncode == 0
    assert not (cache / "weights.h5").is_symlink()
    assert (cache / "weights.h5").read_bytes() == b"downloaded by keras"
