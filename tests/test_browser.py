"""The web page end to end: uvicorn on a loopback port, Debian's Chromium driven by Playwright."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import socket
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from facescope.heads import DEFAULT_THRESHOLDS, UNCERTAIN
from facescope.inference.predictor import Predictor
from facescope.serving.app import create_app
from tests.conftest import FOUR_OUTPUT_HEADS, compose_canvas

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# Generous: the machine may be busy training.
WAIT_MS = 60_000

pytestmark = pytest.mark.browser


@contextlib.contextmanager
def _serving(predictor: Predictor):
    """The page and API of `predictor` on a loopback port: its address."""
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
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


@pytest.fixture(scope="module")
def server_url(predictor: Predictor):
    with _serving(predictor) as url:
        yield url


@pytest.fixture(scope="module")
def four_output_url(four_output_bundle):
    """The page of a model with a fourth output beside age, gender and race (tests.conftest)."""
    with _serving(Predictor(four_output_bundle)) as url:
        yield url


@pytest.fixture(scope="module")
def evaluated_predictor() -> Predictor:
    """An installed model with its evaluation recorded (figures per group, other test sets), whatever the
    bundled model has recorded so far: the model card's tables are drawn from it."""
    return Predictor("faceres-utkface5")


@pytest.fixture(scope="module")
def evaluated_url(evaluated_predictor: Predictor):
    with _serving(evaluated_predictor) as url:
        yield url


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

        def open_at(viewport: dict, url: str = server_url):
            page = browser.new_page(viewport=viewport)
            page.set_default_timeout(WAIT_MS)
            page.errors = []
            page.on("pageerror", lambda error: page.errors.append(str(error)))
            page.goto(url + "/")
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

    shown = page.locator("#photo-1 img.photo-image")
    expect(shown).to_be_visible()
    assert shown.evaluate("image => [image.complete, image.naturalWidth, image.naturalHeight]") == [True, 560, 320]
    expect(page.locator(".face-box")).to_have_count(2)
    expect(page.locator(".face-box .face-number")).to_have_text(["1", "2"])

    cards = page.locator(".face-card")
    expect(cards).to_have_count(2)
    bars_per_card = len(predictor.info.race_labels) + 2  # one per race label, one per gender
    for index in range(2):
        card = cards.nth(index)
        expect(card.locator("h4")).to_contain_text(f"Face {index + 1}")
        expect(card.locator(".age")).to_contain_text("Age bin")
        expect(card.locator(".prob-bar")).to_have_count(bars_per_card)
        # The model's three outputs, in the words the page has always used.
        expect(card.locator(".estimates dt")).to_have_text(["Age", "Gender", "Race"])
        expect(card.locator(".all-probs h5")).to_have_text(["Age", "Gender (apparent)", "Race (apparent)"])
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)  # to look at when it fails
    assert page.errors == []


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_after_upload_the_first_card_is_in_view_and_linked_to_its_box(open_page, viewport, two_faces):
    from playwright.sync_api import expect

    page = open_page(viewport)
    expect(page.locator("#figures-per-group")).to_be_visible()
    page.set_input_files("#file-input", str(two_faces))
    first = page.locator("#face-1-1")
    expect(first).to_be_in_viewport()
    # Pointing at a card marks its box, and tapping a box marks its card.
    first.hover()
    expect(page.locator("#box-1-1")).to_have_class("face-box active")
    expect(page.locator("#box-1-2")).to_have_class("face-box")
    page.locator("#box-1-2").click()
    expect(page.locator("#face-1-2")).to_have_class("face-card active")
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
    expect(page.locator("#face-1-2")).to_be_visible()
    page.evaluate("() => document.querySelectorAll('details').forEach((d) => { d.open = true; })")
    too_wide = page.evaluate("""() => [...document.querySelectorAll('body *')]
        .filter((node) => node.getClientRects().length && node.getBoundingClientRect().right > window.innerWidth + 0.5)
        .map((node) => `${node.tagName}.${node.className} right=${node.getBoundingClientRect().right}`)""")
    assert too_wide == []
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    # The notice stays short: well under a fifth of the first screen.
    assert page.locator("#notice").bounding_box()["height"] < PHONE["height"] / 5


def test_model_card_names_every_training_data_set_and_test_set(open_page, evaluated_url: str,
                                                                evaluated_predictor: Predictor):
    """A model learned from three data sets: the page names each with its licence, and shows the
    figures on each other one's test split, not only the first."""
    from playwright.sync_api import expect

    page = open_page({"width": 1280, "height": 1000}, evaluated_url)
    predictor = evaluated_predictor

    details = page.locator("#model-details")
    expect(page.locator("#figures-per-group")).to_be_visible(timeout=WAIT_MS)
    datasets = predictor.info.training_data["datasets"]
    assert len(datasets) == 3
    for dataset in datasets:
        expect(details).to_contain_text(f"{dataset['title']}: ")
        expect(details).to_contain_text(dataset["licence"])
    # A column per output the figures cover, in the words the page has always used.
    main_table = details.locator("table").first
    expect(main_table.locator("thead th")).to_have_text(["Group", "Faces", "Gender wrong", "Race wrong", "Age off by"])
    expect(details).to_contain_text('"Age off by" is the average error in years.')
    others = predictor.info.evaluation["other_datasets"]
    assert len(others) == 2
    rows = details.locator("#other-test-sets tbody tr")
    expect(rows).to_have_count(len(others))
    for row, (name, other) in zip(rows.all(), others.items()):
        expect(row.locator("th")).to_have_text(name)
        expect(row.locator("td").nth(0)).to_have_text(f"{other['faces']:,}")
        expect(row.locator("td").nth(1)).to_have_text(f"{round(100 * (1 - other['overall']['gender_accuracy']))}%")
    assert page.errors == []


def test_an_example_photo_is_one_click_away_and_credited(page):
    from playwright.sync_api import expect

    examples = page.locator(".example")
    expect(examples).to_have_count(4)
    for image in page.locator(".example img").all():
        image.scroll_into_view_if_needed()
        expect(image).to_have_js_property("complete", True)
        assert image.evaluate("image => image.naturalWidth") > 0
    credit = page.locator("#examples-credit")
    expect(credit).to_contain_text("FairFace: Face Attribute Dataset for Balanced Race, Gender, and Age")
    expect(credit).to_contain_text("CC BY 4.0")
    examples.filter(has_text="Four faces").click()
    expect(page.locator("#status")).to_contain_text("Found 4 faces")
    expect(page.locator("#photo-1 .face-card")).to_have_count(4)
    expect(page.locator("#photo-1 .face-box")).to_have_count(4)
    assert page.errors == []


@pytest.fixture
def three_files(utkface_files, two_faces, tmp_path) -> list[Path]:
    """Two photos with faces and one broken file, in the order the page sorts them by name."""
    one_face = tmp_path / "b-one-face.jpg"
    one_face.write_bytes(utkface_files[5].read_bytes())
    broken = tmp_path / "c-broken.jpg"
    broken.write_bytes(b"not a photo at all" * 50)
    first = tmp_path / "a-two-faces.png"
    two_faces.rename(first)
    return [first, one_face, broken]


def test_several_photos_give_a_card_list_each_and_download_as_json_csv_and_annotated(
        page, predictor: Predictor, three_files, tmp_path):
    from playwright.sync_api import expect

    page.set_input_files("#file-input", [str(path) for path in reversed(three_files)])
    expect(page.locator("#status")).to_contain_text("Analysed 3 photos: 3 faces found; 1 could not be analysed.")
    photos = page.locator(".photo-result")
    expect(photos).to_have_count(3)
    expect(photos.nth(0).locator(".photo-title")).to_have_text("1. a-two-faces.png")
    expect(photos.nth(0).locator(".face-card")).to_have_count(2)
    expect(photos.nth(1).locator(".face-card")).to_have_count(1)
    expect(photos.nth(2).locator(".face-card")).to_have_count(0)
    expect(photos.nth(2).locator(".photo-error")).to_contain_text("not an image")
    # Each photo's faces are numbered from 1 and linked to their own boxes only.
    photos.nth(1).locator(".face-card").hover()
    expect(page.locator("#box-2-1")).to_have_class("face-box active")
    expect(page.locator("#box-1-1")).to_have_class("face-box")

    with page.expect_download() as caught:
        page.click("#download-json")
    assert caught.value.suggested_filename == "facescope-results.json"
    results = json.loads(Path(caught.value.path()).read_text())
    assert [r["path"] for r in results] == [p.name for p in three_files]
    for result, path in zip(results[:2], three_files):
        # The page's results are the API's: what the predictor gives for the photo alone, answers under
        # the default confidence thresholds withheld.
        expected = predictor.predict_image(path.read_bytes(), name=path.name,
                                           thresholds=DEFAULT_THRESHOLDS).model_dump(mode="json")
        assert result == expected
    assert "annotated_image" not in results[0] and results[2]["faces"] == [] and "not an image" in results[2]["error"]

    with page.expect_download() as caught:
        page.click("#download-csv")
    rows = list(csv.DictReader(io.StringIO(Path(caught.value.path()).read_text())))
    from facescope.inference.results import csv_columns

    assert list(rows[0]) == csv_columns(predictor.info.heads)  # the same columns as `facescope predict --format csv`
    # Faces numbered from 1, as the CLI's CSV, the boxes and the cards number them.
    assert [(row["path"], row["face"]) for row in rows] == [
        ("a-two-faces.png", "1"), ("a-two-faces.png", "2"), ("b-one-face.jpg", "1"), ("c-broken.jpg", "")]
    assert rows[0]["age_years"] == str(results[0]["faces"][0]["age"]["years"])
    # The model that answered; none for the photo the server refused before any model saw it.
    assert [row["model"] for row in rows] == [predictor.info.name] * 3 + [""]
    first = results[0]["faces"][0]
    assert float(rows[0]["gender_prob"]) == pytest.approx(max(first["gender"]["probs"].values()))
    assert rows[0]["gender"] == first["gender"]["label"]

    with page.expect_download() as caught:
        photos.nth(0).locator(".download-annotated").click()
    assert caught.value.suggested_filename == "a-two-faces.annotated.jpg"
    with Image.open(caught.value.path()) as annotated:
        assert (annotated.format, annotated.size) == ("JPEG", (560, 320))
    assert page.errors == []


def test_a_folder_is_analysed_photo_by_photo(page, three_files, tmp_path):
    from playwright.sync_api import expect

    folder = tmp_path / "folder"
    folder.mkdir()
    for path in three_files[:2]:
        path.rename(folder / path.name)
    (folder / "notes.txt").write_text("not a photo, and not sent")
    page.set_input_files("#folder-input", str(folder))
    expect(page.locator("#status")).to_contain_text("Analysed 2 photos: 3 faces found.")
    expect(page.locator(".photo-result .photo-title")).to_have_text(
        ["1. folder/a-two-faces.png", "2. folder/b-one-face.jpg"])
    assert page.errors == []


def test_tables_read_on_a_phone_without_words_broken(open_page, evaluated_url: str):
    """At 390 px every table fits its column, and no header or group name is split inside a word."""
    from playwright.sync_api import expect

    page = open_page(PHONE, evaluated_url)
    expect(page.locator("#figures-per-group")).to_be_visible()
    page.evaluate("() => document.querySelectorAll('details').forEach((d) => { d.open = true; })")
    tables = page.locator(".model-card table")
    assert tables.count() >= 3
    broken = page.evaluate("""() => {
        const broken = [];
        for (const cell of document.querySelectorAll('.model-card th, .model-card td')) {
            const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
            for (let node = walker.nextNode(); node; node = walker.nextNode()) {
                for (const match of node.textContent.matchAll(/\\S+/g)) {
                    const range = document.createRange();
                    range.setStart(node, match.index);
                    range.setEnd(node, match.index + match[0].length);
                    const lines = new Set([...range.getClientRects()].map((rect) => Math.round(rect.top)));
                    if (lines.size > 1) broken.push(match[0]);
                }
            }
        }
        return broken;
    }""")
    assert broken == []
    overflowing = page.evaluate("""() => [...document.querySelectorAll('.model-card .table-wrap')]
        .filter((wrap) => wrap.scrollWidth > wrap.clientWidth + 0.5).map((wrap) => wrap.textContent.slice(0, 40))""")
    assert overflowing == []


def test_the_confidence_control_withholds_answers_on_every_card(page, predictor: Predictor, utkface_files, tmp_path):
    """At 100%, an answer stands only where the model put all its probability on it; the cards say
    "uncertain" with the most likely answer beside it, and the downloaded results match."""
    from playwright.sync_api import expect

    photo = tmp_path / "face.jpg"
    photo.write_bytes(utkface_files[2].read_bytes())
    page.fill("#min-confidence", "100")
    page.set_input_files("#file-input", str(photo))
    expect(page.locator("#results")).to_be_visible(timeout=WAIT_MS)
    with page.expect_download() as caught:
        page.click("#download-json")
    [result] = json.loads(Path(caught.value.path()).read_text())
    every_head = {head.name: 1.0 for head in predictor.info.heads}
    expected = predictor.predict_image(photo.read_bytes(), name=photo.name, thresholds=every_head)
    assert result == expected.model_dump(mode="json")
    face = result["faces"][0]
    withheld = [head for head in ("gender", "race") if face[head]["label"] == UNCERTAIN]
    assert withheld or face["age"]["bin"] == UNCERTAIN
    estimates = page.locator(".face-card .estimates")
    for head in withheld:
        expect(estimates).to_contain_text("uncertain")
        top = max(face[head]["probs"], key=face[head]["probs"].get).replace("_", " ")
        expect(estimates).to_contain_text(f"{top} at most")
    assert page.errors == []


def test_a_fourth_output_is_on_every_card_and_in_the_csv(open_page, four_output_url: str, four_output_bundle,
                                                          two_faces):
    """The page follows the model's outputs: a model with a fourth one (`race_fairface`) names it in the
    tagline and the title, shows it on each face's card, names its labels in the model card, and writes
    its two columns in the CSV, whose header is the CLI's for the same model."""
    from playwright.sync_api import expect

    from facescope import labels
    from facescope.inference.results import csv_columns

    page = open_page({"width": 1280, "height": 1000}, four_output_url)
    details = page.locator("#model-details")
    expect(details).to_contain_text("race fairface labels (fairface7): " + ", ".join(
        label.replace("_", " ") for label in labels.FAIRFACE7.labels))
    # The tagline and the title name what this model estimates, from its outputs.
    expect(page.locator(".tagline")).to_have_text(
        "Estimates of apparent age, gender, race and race fairface from the faces in a photo")
    expect(page).to_have_title("facescope: estimates of apparent age, gender, race and race fairface")
    page.set_input_files("#file-input", str(two_faces))
    expect(page.locator("#status")).to_contain_text("Found 2 faces")
    with page.expect_download() as caught:
        page.click("#download-json")
    [result] = json.loads(Path(caught.value.path()).read_text())
    predictor = Predictor(four_output_bundle)
    expected = predictor.predict_image(two_faces.read_bytes(), name=two_faces.name,
                                       thresholds=DEFAULT_THRESHOLDS).model_dump(mode="json")
    assert result == expected

    cards = page.locator(".face-card")
    expect(cards).to_have_count(2)
    for card, face in zip(cards.all(), result["faces"]):
        # Ages first, then the labels in the model's order, as the CSV and the annotated photo order them.
        expect(card.locator(".estimates dt")).to_have_text(["Age", "Gender", "Race", "Race fairface"])
        expect(card.locator(".all-probs h5")).to_have_text(
            ["Age", "Gender (apparent)", "Race (apparent)", "Race fairface"])
        expect(card.locator(".prob-bar")).to_have_count(len(labels.GENDERS) + len(labels.UTKFACE5.labels)
                                                        + len(labels.FAIRFACE7.labels))
        extra = face["race_fairface"]
        top = max(extra["probs"], key=extra["probs"].get)
        expect(card.locator(".estimates dd").nth(3)).to_contain_text(top.replace("_", " "))
        expect(card.locator(".prob-bar[aria-label^='Race fairface: ']")).to_have_count(len(labels.FAIRFACE7.labels))
        expect(card.locator(f".prob-bar[aria-label='Race fairface: {top} {round(100 * extra['probs'][top])}%']")
               ).to_have_count(1)

    with page.expect_download() as caught:
        page.click("#download-csv")
    text = Path(caught.value.path()).read_text()
    assert text.splitlines()[0] == ",".join(csv_columns(FOUR_OUTPUT_HEADS))  # `facescope predict -f csv`'s header
    rows = list(csv.DictReader(io.StringIO(text)))
    for row, face in zip(rows, result["faces"], strict=True):
        extra = face["race_fairface"]
        assert row["race_fairface"] == extra["label"]
        assert float(row["race_fairface_prob"]) == pytest.approx(max(extra["probs"].values()))
        assert (row["race"], row["gender"]) == (face["race"]["label"], face["gender"]["label"])
        assert float(row["age_years"]) == pytest.approx(face["age"]["years"])
    assert page.errors == []
