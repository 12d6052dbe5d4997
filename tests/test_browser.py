"""The web page end to end: uvicorn on a loopback port, Debian's Chromium driven by Playwright."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from facescope.inference.predictor import Predictor
from facescope.serving.app import create_app
from tests.conftest import compose_canvas

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# Generous: the machine may be busy training.
WAIT_MS = 60_000

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server_url(predictor: Predictor):
    import uvicorn

    # Bound here and handed to uvicorn, so no other process can take the port in between.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(predictor=predictor), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=10)
    listener.close()


@pytest.fixture
def page(server_url: str):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(WAIT_MS)
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        page.goto(server_url + "/")
        yield page
        browser.close()


def test_upload_shows_numbered_boxes_and_a_card_per_face(page, predictor: Predictor, utkface_files, tmp_path):
    from playwright.sync_api import expect

    canvas, _ = compose_canvas(utkface_files[1:3], size=(560, 320))
    photo = tmp_path / "two-faces.png"
    Image.fromarray(canvas).save(photo)

    notice = page.locator("#notice")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("statistical estimates")
    expect(notice.locator("a[href='#model-card']")).to_be_visible()
    expect(page.locator("#figures-per-group")).to_be_visible(timeout=WAIT_MS)

    page.set_input_files("#file-input", str(photo))
    expect(page.locator("#results")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#status")).to_contain_text("Found 2 faces")

    shown = page.locator("#photo")
    expect(shown).to_be_visible()
    assert shown.evaluate("image => [image.complete, image.naturalWidth, image.naturalHeight]") == [True, 560, 320]
    expect(page.locator(".face-box")).to_have_count(2)
    expect(page.locator(".face-box .face-number")).to_have_text(["1", "2"])

    cards = page.locator(".face-card")
    expect(cards).to_have_count(2)
    bars_per_card = len(predictor.info.race_labels) + 2  # one per race label, one per gender
    for index in range(2):
        card = cards.nth(index)
        expect(card.locator("h3")).to_contain_text(f"Face {index + 1}")
        expect(card.locator(".age")).to_contain_text("Age bin")
        expect(card.locator(".prob-bar")).to_have_count(bars_per_card)
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)  # to look at when it fails
    assert page.errors == []
