"""``fruits-kedro serve``: real HTTP requests to a started server, and its page in a real
headless Chromium (Debian's, through Playwright; skipped where it is not installed)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest
from fastapi import HTTPException
from PIL import Image

from fruits_kedro.imaging.decode import TRUNCATED
from fruits_kedro.serve import _DecodeSlots
from tests.imaging.crafted import incomplete_jpegs
from tests.outputs import current_model
from tests.s3_server import free_port

SCRIPT = Path(sys.executable).parent / "fruits-kedro"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def served(generated_evaluation, tmp_path_factory):
    """The server's URL and process, with its default limits."""
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
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def server(served) -> str:
    return served[0]


@pytest.fixture(scope="module")
def labels(generated_evaluation) -> list[str]:
    return json.loads(current_model(generated_evaluation, "classifier_settings.json").read_text())["labels"]


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
        if name == "grey_9000.jpg":  # 81 Mpx: over serve's pixel limit, refused from its header first
            assert response.status_code == 413 and "9000x9000" in response.json()["detail"], response.text
            continue
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


def test_an_oversized_upload_without_a_length_is_refused_as_it_streams(server):
    boundary = "x" * 16

    def body():
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="huge.jpg"\r\n\r\n'.encode()
        for _ in range(21):  # 21 MB, in chunks, without a Content-Length
            yield b"\xff" * (1024 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    response = httpx.post(
        f"{server}/predict",
        content=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=60,
    )
    assert response.status_code == 413 and "larger than 20 MB" in response.json()["detail"]


# The server's resident memory, children included, while it answers any uploads at all.
MEMORY_BOUND = int(1.5 * 1024**3)
# The photos' memory after a load, at most (what the heap keeps for the next requests).
MEMORY_KEPT = 256 * 1024**2
CONCURRENT = 32


def _encoded(size: tuple[int, int], fmt: str, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, (200, 160, 30)).save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _rss(process: psutil.Process) -> int:
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])


def _health(client, url: str) -> int | str:
    try:
        return client.get(f"{url}/health", timeout=60).status_code
    except httpx.TransportError as exc:
        return type(exc).__name__


def _load(served, name: str, data: bytes, count: int = CONCURRENT) -> tuple[Counter, int, int, int]:
    """``count`` uploads of ``data`` at once: (their statuses, the server's resident memory
    before, at its peak during the load, and after). A server that passes the bound is killed."""
    url, process = served
    watched = psutil.Process(process.pid)
    before = peak = _rss(watched)
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.wait(0.02):
            peak = max(peak, _rss(watched))
            if peak > MEMORY_BOUND:  # stop it before it takes the machine down
                process.kill()
                return

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with httpx.Client(timeout=120, limits=httpx.Limits(max_connections=count + 1)) as client:

            def post(i: int) -> int:
                try:
                    return client.post(f"{url}/predict", files={"file": (f"{i}-{name}", data)}).status_code
                except httpx.TransportError as exc:
                    return type(exc).__name__

            with ThreadPoolExecutor(count) as pool:
                statuses = pool.map(post, range(count))
                healthy = _health(client, url)  # while it decodes
                statuses = Counter(statuses)
    finally:
        done.set()
        watcher.join()
    assert peak <= MEMORY_BOUND, f"the server's memory reached {peak / 1024**3:.1f} GB (killed), {statuses}"
    assert healthy == 200 and _health(httpx, url) == 200
    return statuses, before, peak, _rss(watched)


def test_concurrent_uploads_of_huge_pngs_keep_the_servers_memory_bounded(served):
    # 88 Mpx, under Pillow's limit, in a file of a few hundred KB: refused from its header.
    statuses, before, peak, after = _load(served, "huge.png", _encoded((9400, 9400), "PNG"))
    assert statuses == Counter({413: CONCURRENT}), statuses
    assert after - before < MEMORY_KEPT


def test_concurrent_uploads_of_40_megapixel_jpegs_are_answered_within_the_memory_bound(served):
    statuses, before, peak, after = _load(served, "phone.jpg", _encoded((7300, 5475), "JPEG"))
    assert statuses == Counter({200: CONCURRENT}), statuses
    assert after - before < MEMORY_KEPT


def test_concurrent_uploads_of_40_megapixel_transparent_pngs_are_answered_within_the_memory_bound(served):
    # No reduced decoding for PNG: the most memory a photo under the pixel limit can take.
    statuses, before, peak, after = _load(served, "scan.png", _encoded((7300, 5475), "PNG", "RGBA"), count=4)
    assert statuses == Counter({200: 4}), statuses
    assert after - before < MEMORY_KEPT


def test_decodes_beyond_the_slots_wait_and_beyond_the_queue_are_refused_busy():
    async def scenario() -> tuple[list[str], HTTPException]:
        slots, order = _DecodeSlots(slots=1, queued=1), []

        async def decode(name: str, seconds: float) -> None:
            async with slots.hold():
                order.append(name)
                await asyncio.sleep(seconds)

        first = asyncio.create_task(decode("first", 0.2))
        await asyncio.sleep(0)
        waiting = asyncio.create_task(decode("waiting", 0))
        await asyncio.sleep(0)
        with pytest.raises(HTTPException) as refused:
            await decode("third", 0)
        await asyncio.gather(first, waiting)
        return order, refused.value

    order, refused = asyncio.run(scenario())
    assert order == ["first", "waiting"]
    assert refused.status_code == 429 and refused.headers == {"Retry-After": "1"} and "busy" in refused.detail


VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
PARTS = {"heading": "h1", "drop zone": "#drop", "preview": "#preview", "results": "#top"}


def _layout(page, viewport: dict) -> dict[str, dict]:
    """The visible parts' boxes; each must lie within the viewport's width and apart from the others."""
    boxes = {}
    for name, selector in PARTS.items():
        box = page.locator(selector).bounding_box()
        if box is not None and box["width"] > 0 and box["height"] > 0:
            boxes[name] = box
            assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], (name, box)
    names = list(boxes)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            a, b = boxes[first], boxes[second]
            apart = (
                a["x"] + a["width"] <= b["x"]
                or b["x"] + b["width"] <= a["x"]
                or a["y"] + a["height"] <= b["y"]
                or b["y"] + b["height"] <= a["y"]
            )
            assert apart, f"{first} {a} overlaps {second} {b}"
    return boxes


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make browser)")
@pytest.mark.parametrize("device", list(VIEWPORTS))
def test_the_pages_heading_drop_zone_preview_and_results_never_overlap(server, generated_sample, device, tmp_path):
    """``SERVE_SCREENSHOTS=docs`` keeps the screenshots (docs/serve_<device>.png)."""
    from playwright.sync_api import sync_playwright

    viewport = VIEWPORTS[device]
    photo = tmp_path / "photo.jpg"  # a phone photo's shape: wider than any viewport
    Image.open(_photo(generated_sample)).resize((1600, 1200)).save(photo, quality=90)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport=viewport, is_mobile=device == "phone")
            page.goto(server)
            assert set(_layout(page, viewport)) == {"heading", "drop zone"}
            page.set_input_files("#file", str(photo))
            page.wait_for_selector("li.prediction:nth-child(3)", timeout=30_000)
            page.wait_for_function("document.getElementById('preview').complete")
            assert set(_layout(page, viewport)) == set(PARTS)
            folder = Path(os.environ.get("SERVE_SCREENSHOTS", tmp_path))
            page.screenshot(path=str(folder / f"serve_{device}.png"))
        finally:
            browser.close()
