"""``make viz``: ``kedro viz run`` on loopback after a run, read through its API and in a real
headless Chromium (Debian's, through Playwright; skipped where it is not installed)."""

from __future__ import annotations

import json
import random
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

KEDRO = Path(sys.executable).parent / "kedro"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DEFAULT_NODES = {"label_images", "extract_features", "merge_with_previous_features", "fit_pca", "plot_scree"}


@pytest.fixture(scope="module")
def viz(default_run, tmp_path_factory):
    """(url, process) of ``kedro viz run`` in the project of the default run."""
    port = _viz_port()
    log_path = tmp_path_factory.mktemp("viz") / "viz.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(KEDRO), "viz", "run", "--host", "127.0.0.1", "--port", str(port), "--no-browser"],
            cwd=default_run,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 180
            while True:
                assert process.poll() is None, f"kedro viz stopped: {log_path.read_text()[-3000:]}"
                try:
                    if httpx.get(f"{url}/api/main", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"kedro viz did not start: {log_path.read_text()[-3000:]}"
                time.sleep(0.5)
            yield url, process, log_path
        finally:
            process.terminate()
            process.wait(timeout=30)


def _viz_port() -> int:
    """A free port below the ephemeral range, which Kedro-Viz refuses."""
    for port in random.sample(range(20_000, 40_000), 50):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-40000 on 127.0.0.1")


def _nodes(url: str) -> dict[str, dict]:
    return {node["name"]: node for node in httpx.get(f"{url}/api/main", timeout=30).json()["nodes"]}


def test_paths_and_previews_are_the_current_outputs(viz, default_run):
    url, _, _ = viz
    nodes = _nodes(url)
    current = json.loads((default_run / "data/current_outputs.json").read_text())["outputs"]
    csv = httpx.get(f"{url}/api/nodes/{nodes['image_features_pca_csv']['id']}", timeout=60).json()
    assert Path(csv["filepath"]) == (default_run / "data" / current["04_feature/image_features_pca.csv"]).resolve()
    assert Path(csv["filepath"]).exists() and "/runs/" in csv["filepath"]
    variance = httpx.get(f"{url}/api/nodes/{nodes['pca_explained_variance']['id']}", timeout=60).json()
    expected = json.loads((default_run / "data" / current["08_reporting/pca_explained_variance.json"]).read_text())
    assert variance["preview_type"] == "JSONPreview" and json.loads(variance["preview"]) == expected


def test_outputs_of_pipelines_not_run_cause_no_warning_and_no_jvm_starts(viz):
    url, process, log_path = viz
    _nodes(url)
    log = log_path.read_text()
    assert "could not be previewed" not in log and "Traceback" not in log, log[-3000:]
    children = psutil.Process(process.pid).children(recursive=True)
    assert not [child for child in children if "java" in child.name()], [c.cmdline() for c in children]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make browser)")
def test_the_served_site_shows_the_pipelines_nodes_in_a_browser(viz):
    from playwright.sync_api import sync_playwright

    url, _, _ = viz
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(url, wait_until="domcontentloaded")  # its web fonts are not reachable here
            page.wait_for_selector(".pipeline-node", timeout=60_000)
            labels = page.locator(".pipeline-node").all_text_contents()  # SVG: no innerText
            shown = {label.strip().lower().replace(" ", "_") for label in labels}
            assert DEFAULT_NODES <= shown, sorted(shown)
        finally:
            browser.close()
