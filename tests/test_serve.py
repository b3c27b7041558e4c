"""``fruits-kedro serve``: real HTTP requests to a started server, and its page in a real
headless Chromium (Debian's, through Playwright; skipped where it is not installed)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from fruits_kedro.imaging.decode import TRUNCATED
from tests.imaging.crafted import incomplete_jpegs
from tests.s3_server import free_port

SCRIPT = Path(sys.executable).parent / "fruits-kedro"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def server(generated_evaluation, tmp_path_factory):
    port = free_port()
    log = (tmp_path_factory.mktemp("serve") / "serve.log").open("wb")
    process = subprocess.Popen(
        [str(SCRIPT), "serve", "--port", str(port), "--project-path", str(generated_evaluation)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"the server stopped: {Path(log.name).read_text()[-2000:]}"
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def labels(generated_evaluation) -> list[str]:
    return json.loads((generated_evaluation / "data/06_models/classifier_settings.json").read_text())["labels"]


def _photo(generated_sample) -> Path:
    return sorted((generated_sample / "Test" / "Banana").glob("*.jpg"))[0]


def test_health_names_the_backbone(server):
    health = httpx.get(f"{server}/health").json()
    assert health["status"] == "ok" and health["backbone"] == "mobilenet_v2" and health["labels"] > 1


def test_a_photo_gets_its_three_most_probable_labels(server, generated_sample, labels):
    photo = _photo(generated_sample)
    response = httpx.post(f"{server}/predict", files={"file": (photo.name, photo.read_bytes(), "image/jpeg")})
    assert response.status_code == 200
    top = response.json()["top"]
    assert len(top) == 3 and all(entry["label"] in labels for entry in top)
    probabilities = [entry["probability"] for entry in top]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0 + 1e-9


def test_a_file_that_is_not_a_photo_is_refused_naming_it(server):
    response = httpx.post(f"{server}/predict", files={"file": ("notes.txt", b"shopping list", "text/plain")})
    assert response.status_code == 415
    assert response.json()["detail"].startswith("notes.txt: not a decodable image")


def test_a_jpeg_with_less_data_than_its_header_says_is_refused(server, generated_sample):
    for name, data in incomplete_jpegs(_photo(generated_sample)).items():
        response = httpx.post(f"{server}/predict", files={"file": (name, data, "image/jpeg")}, timeout=60)
        assert (response.status_code, response.json()["detail"]) == (415, f"{name}: {TRUNCATED}")


def test_an_oversized_upload_is_refused(server):
    response = httpx.post(
        f"{server}/predict", files={"file": ("huge.jpg", b"\xff" * (21 * 1024 * 1024), "image/jpeg")}, timeout=60
    )
    assert response.status_code == 413 and "larger than 20 MB" in response.json()["detail"]


def test_a_missing_file_field_is_a_client_error(server):
    assert httpx.post(f"{server}/predict", data={"photo": "x"}).status_code == 422


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make browser)")
def test_the_page_shows_the_top_three_of_a_picked_photo_in_a_browser(server, generated_sample, labels):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)  # a phone
            page.goto(server)
            page.set_input_files("#file", str(_photo(generated_sample)))
            page.wait_for_selector("li.prediction:nth-child(3)", timeout=30_000)
            shown = page.locator("li.prediction .label").all_inner_texts()
            percentages = page.locator("li.prediction .probability").all_inner_texts()
            assert len(shown) == 3 and all(label.replace(" ", "_") in labels for label in shown)
            assert all(p.endswith("%") for p in percentages)
            assert page.locator("#preview").is_visible() and page.locator("#error").inner_text() == ""
        finally:
            browser.close()
