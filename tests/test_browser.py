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


DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def open_page(server_url: str):
    """Opens the page in a fresh headless Chromium at the given viewport."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)

        def open_at(viewport: dict):
            page = browser.new_page(viewport=viewport)
            page.set_default_timeout(WAIT_MS)
            page.errors = []
            page.on("pageerror", lambda error: page.errors.append(str(error)))
            page.goto(server_url + "/")
            return page

        yield open_at
        browser.close()


@pytest.fixture
def page(open_page):
    return open_page({"width": 1280, "height": 1000})


@pytest.fixture
def two_faces(utkface_files, tmp_path) -> Path:
    canvas, _ = compose_canvas(utkface_files[1:3], size=(560, 320))
    photo = tmp_path / "two-faces.png"
    Image.fromarray(canvas).save(photo)
    return photo


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


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_after_upload_the_first_card_is_in_view_and_linked_to_its_box(open_page, viewport, two_faces):
    from playwright.sync_api import expect

    page = open_page(viewport)
    expect(page.locator("#figures-per-group")).to_be_visible()
    page.set_input_files("#file-input", str(two_faces))
    first = page.locator("#face-1")
    expect(first).to_be_in_viewport()
    # Pointing at a card marks its box, and tapping a box marks its card.
    first.hover()
    expect(page.locator("#box-1")).to_have_class("face-box active")
    expect(page.locator("#box-2")).to_have_class("face-box")
    page.locator("#box-2").click()
    expect(page.locator("#face-2")).to_have_class("face-card active")
    # An estimate is either confident (80% or more, said plainly) or reads as a guess with its runner-up.
    for estimate in page.locator(".face-card .estimates .estimate").all():
        text = estimate.inner_text()
        if "confident" in estimate.get_attribute("class"):
            assert int(text.split()[-1].rstrip("%")) >= 80
        else:
            assert text.startswith("likely ") and ", or " in text
    assert page.errors == []


def test_nothing_is_wider_than_a_phone(open_page, two_faces):
    from playwright.sync_api import expect

    page = open_page(PHONE)
    expect(page.locator("#figures-per-group")).to_be_visible()
    page.set_input_files("#file-input", str(two_faces))
    expect(page.locator("#face-2")).to_be_visible()
    page.evaluate("() => document.querySelectorAll('details').forEach((d) => { d.open = true; })")
    too_wide = page.evaluate("""() => [...document.querySelectorAll('body *')]
        .filter((node) => node.getClientRects().length && node.getBoundingClientRect().right > window.innerWidth + 0.5)
        .map((node) => `${node.tagName}.${node.className} right=${node.getBoundingClientRect().right}`)""")
    assert too_wide == []
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    # The notice stays short: well under a fifth of the first screen.
    assert page.locator("#notice").bounding_box()["height"] < PHONE["height"] / 5


def test_model_card_names_every_training_data_set_and_test_set(page, predictor: Predictor):
    """The default model learned from three data sets: the page names each with its licence, and shows
    the figures on each one's test split, not only the first."""
    from playwright.sync_api import expect

    details = page.locator("#model-details")
    expect(page.locator("#figures-per-group")).to_be_visible(timeout=WAIT_MS)
    datasets = predictor.info.training_data["datasets"]
    assert len(datasets) == 3
    for dataset in datasets:
        expect(details).to_contain_text(f"{dataset['title']}: ")
        expect(details).to_contain_text(dataset["licence"])
    others = predictor.info.evaluation["other_datasets"]
    assert len(others) == 2
    rows = details.locator("#other-test-sets tbody tr")
    expect(rows).to_have_count(len(others))
    for row, (name, other) in zip(rows.all(), others.items()):
        expect(row.locator("th")).to_have_text(name)
        expect(row.locator("td").nth(0)).to_have_text(f"{other['faces']:,}")
        expect(row.locator("td").nth(1)).to_have_text(f"{round(100 * (1 - other['overall']['gender_accuracy']))}%")
    assert page.errors == []
