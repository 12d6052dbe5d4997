"""The REST API (facescope.serving.app) through FastAPI's TestClient, on real UTKFace crops."""

from __future__ import annotations

import base64
import io
import math
import struct
import time
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.conftest import compose_canvas
from facescope import labels
from facescope.heads import DEFAULT_THRESHOLDS, UNCERTAIN
from facescope.inference.predictor import Predictor
from facescope.inference.results import csv_columns
from facescope.serving.app import MULTIPART_OVERHEAD, create_app

PREDICT = "/api/v1/predict"


def png_bytes(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def decompression_bomb_png(side: int = 20_000) -> bytes:
    """A valid 1-bit PNG of side x side black pixels: about 50 kB as a file, 400 megapixels decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" * (1 + (side + 7) // 8)  # the row's filter byte, then its pixels packed 8 to a byte
    compressor = zlib.compressobj(9)
    pixels = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1 bit per pixel, greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def post_photo(client: TestClient, data: bytes, name: str = "face.jpg", content_type: str = "image/jpeg",
               annotate: bool = False):
    return client.post(PREDICT, params={"annotate": annotate}, files={"file": (name, data, content_type)})


@pytest.fixture(scope="module")
def client(predictor: Predictor) -> TestClient:
    return TestClient(create_app(predictor=predictor))


@pytest.fixture(scope="module")
def crops(utkface_files) -> list[bytes]:
    """Five real crops, varied by the sample's spread over names (age, gender, race)."""
    return [path.read_bytes() for path in utkface_files[::8][:5]]


@pytest.fixture(scope="module")
def three_faces(utkface_files) -> tuple[bytes, list]:
    canvas, boxes = compose_canvas(utkface_files[1:4])
    return png_bytes(canvas), boxes


def check_probabilities(probs: dict[str, float], expected_labels) -> None:
    assert list(probs) == list(expected_labels)
    assert all(0.0 <= p <= 1.0 for p in probs.values())
    assert math.isclose(sum(probs.values()), 1.0, abs_tol=1e-3)


def check_face(face: dict, width: int, height: int, race_labels) -> None:
    assert set(face) == {"box", "score", "landmarks", "age", "gender", "race", "by_model"}
    assert face["by_model"] == {}  # one model: no further estimates
    x1, y1, x2, y2 = face["box"]
    assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    assert 0.0 < face["score"] <= 1.0
    assert len(face["landmarks"]) == 5
    assert all(len(point) == 2 for point in face["landmarks"])

    age = face["age"]
    # `measured`: the model's figure for faces estimated alike, once its bundle has figures by estimated group
    assert set(age) - {"measured"} == {"years", "bin", "bin_probs", "years_std"}
    check_probabilities(age["bin_probs"], labels.AGE_BIN_LABELS)
    assert age["bin"] == answer(age["bin_probs"], DEFAULT_THRESHOLDS["age"])
    if age["years"] is not None:
        assert 0.0 <= age["years"] <= labels.MAX_AGE and age["years_std"] >= 0.0

    for name, expected_labels in (("gender", labels.GENDERS), ("race", race_labels)):
        estimate = face[name]
        assert set(estimate) - {"measured"} == {"label", "probs"}
        check_probabilities(estimate["probs"], expected_labels)
        assert estimate["label"] == answer(estimate["probs"], DEFAULT_THRESHOLDS[name])


def answer(probs: dict, threshold: float) -> str:
    """The most likely label, or "uncertain" under the threshold."""
    top = max(probs, key=probs.get)
    return top if probs[top] >= threshold else UNCERTAIN


def test_health(client: TestClient, predictor: Predictor):
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "model_loaded": True, "model": predictor.info.name}


def test_model_card(client: TestClient, predictor: Predictor):
    card = client.get("/api/v1/model").json()
    info = predictor.info
    assert card["name"] == info.name and card["backbone"] == info.backbone
    assert card["race_taxonomy"] == info.race_taxonomy
    assert card["labels"] == {
        "gender": list(labels.GENDERS), "race": list(info.race_labels), "age_bins": list(labels.AGE_BIN_LABELS),
    }
    # Each output the page shows and writes, in the model's order, and the CLI's CSV header.
    assert [head["name"] for head in card["heads"]] == ["gender", "race", "age"]
    assert [head["kind"] for head in card["heads"]] == ["label", "label", info.heads[2].kind]
    assert [head["csv_columns"] for head in card["heads"]] == [
        ["gender", "gender_prob"], ["race", "race_prob"], ["age_years", "age_bin"]]
    assert card["heads"][1]["labels"] == list(info.race_labels)
    assert card["csv_columns"] == csv_columns(info.heads)
    assert card["training_data"] == info.training_data
    assert card["evaluation"] == info.evaluation  # overall and per group, as model.json records them
    assert card["licence"] == info.licence and "non-commercial" in card["licence"]
    assert card["intended_use"] == info.intended_use
    assert card["must_not_be_used_for"] == list(info.must_not_be_used_for)
    assert any("surveillance" in item for item in card["must_not_be_used_for"])


def test_predict_schema_on_real_crops(client: TestClient, predictor: Predictor, crops: list[bytes]):
    for number, data in enumerate(crops):
        name = f"crop-{number}.jpg"
        response = post_photo(client, data, name)
        assert response.status_code == 200, response.text
        result = response.json()
        # Exactly a line of `facescope predict --format jsonl` (no annotated_image key unless asked for).
        assert set(result) == {"path", "model", "width", "height", "faces", "faces_found", "error"}
        assert result["faces_found"] == len(result["faces"])
        assert (result["path"], result["width"], result["height"], result["error"]) == (name, 200, 200, None)
        assert len(result["faces"]) == 1
        check_face(result["faces"][0], 200, 200, predictor.info.race_labels)
        # The library's answer with the default confidence thresholds applied, as the API applies them.
        expected = next(predictor.predict_images([data], names=[name], thresholds=DEFAULT_THRESHOLDS))
        assert result == expected.model_dump(mode="json")


def test_predict_annotated_image(client: TestClient, crops: list[bytes]):
    result = post_photo(client, crops[0], annotate=True).json()
    prefix = "data:image/jpeg;base64,"
    assert result["annotated_image"].startswith(prefix)
    annotated = Image.open(io.BytesIO(base64.b64decode(result["annotated_image"][len(prefix):])))
    assert annotated.size == (result["width"], result["height"])


def test_three_pasted_faces_give_three_faces(client: TestClient, predictor: Predictor, three_faces):
    data, pasted = three_faces
    result = post_photo(client, data, "three.png", "image/png").json()
    assert (result["width"], result["height"]) == (900, 400)
    assert len(result["faces"]) == 3
    centres = []
    for face in result["faces"]:
        check_face(face, 900, 400, predictor.info.race_labels)
        x1, y1, x2, y2 = face["box"]
        centres.append(((x1 + x2) / 2, (y1 + y2) / 2))
    # Each pasted crop holds exactly one detected face's centre.
    for left, top, right, bottom in pasted:
        assert sum(left <= x <= right and top <= y <= bottom for x, y in centres) == 1


def test_faces_per_image_are_capped(predictor: Predictor, three_faces):
    capped = TestClient(create_app(predictor=predictor, max_faces=2))
    data, _ = three_faces
    result = post_photo(capped, data, "three.png", "image/png").json()
    faces = result["faces"]
    assert len(faces) == 2 and result["faces_found"] == 3  # the answer says how many were left out
    areas = [(x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in (face["box"] for face in faces)]
    assert areas == sorted(areas, reverse=True)


def test_413_by_content_length(predictor: Predictor, crops: list[bytes]):
    small = TestClient(create_app(predictor=predictor, max_upload_bytes=1000))
    response = post_photo(small, crops[0] + b"\0" * (MULTIPART_OVERHEAD + 1000))
    assert response.status_code == 413
    assert "over the limit" in response.json()["detail"]


def test_413_by_bytes_received_without_content_length(predictor: Predictor):
    small = TestClient(create_app(predictor=predictor, max_upload_bytes=1000))
    boundary = "facescope-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + b"\0" * (MULTIPART_OVERHEAD + 5000) + \
        f"\r\n--{boundary}--\r\n".encode()
    # A generator body is sent chunked, with no Content-Length to check in advance.
    response = small.post(PREDICT, content=(body[i:i + 4096] for i in range(0, len(body), 4096)),
                          headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 413
    assert "over the limit" in response.json()["detail"]


def test_413_for_a_file_just_over_the_limit(predictor: Predictor, crops: list[bytes]):
    # Within the allowance for multipart overhead, so only the file's own size catches it.
    limit = len(crops[0]) - 1
    response = post_photo(TestClient(create_app(predictor=predictor, max_upload_bytes=limit)), crops[0])
    assert response.status_code == 413
    assert "over the limit" in response.json()["detail"]


def test_415_for_junk_bytes(client: TestClient):
    response = post_photo(client, b"this is not a photo at all" * 20)
    assert response.status_code == 415
    assert "not an image file" in response.json()["detail"]


def test_415_for_a_non_image_type(client: TestClient, crops: list[bytes]):
    response = post_photo(client, crops[0], "notes.txt", "text/plain")
    assert response.status_code == 415
    assert "text/plain is not an image type" in response.json()["detail"]


def test_415_for_a_body_that_is_not_multipart(client: TestClient, crops: list[bytes]):
    response = client.post(PREDICT, content=crops[0], headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 415
    assert "multipart/form-data" in response.json()["detail"]


def test_422_for_a_truncated_jpeg(client: TestClient, crops: list[bytes]):
    response = post_photo(client, crops[0][: len(crops[0]) // 2])
    assert response.status_code == 422
    assert "truncated" in response.json()["detail"]


def test_422_for_a_decompression_bomb(client: TestClient):
    bomb = decompression_bomb_png()
    assert len(bomb) < 200_000
    response = post_photo(client, bomb, "bomb.png", "image/png")
    assert response.status_code == 422
    assert "decompression bomb" in response.json()["detail"]


def test_422_without_a_file_field(client: TestClient):
    response = client.post(PREDICT, files={"photo": (None, "a field, not a file")})
    assert response.status_code == 422
    assert "`file`" in response.json()["detail"]


class SlowPredictor(Predictor):
    def predict_image(self, image, aligned=False, **options):
        time.sleep(0.5)
        return super().predict_image(image, aligned, **options)


def test_504_when_the_prediction_takes_too_long(bundle_dir, crops: list[bytes]):
    slow = TestClient(create_app(predictor=SlowPredictor(bundle_dir), request_timeout_s=0.1))
    response = post_photo(slow, crops[0])
    assert response.status_code == 504
    assert "longer than 0.1 s" in response.json()["detail"]


def test_page_and_its_files_are_served(client: TestClient):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="notice"' in page.text and 'type="file"' in page.text
    for asset in ("/app.js", "/style.css"):
        assert client.get(asset).status_code == 200
    # Nothing is loaded from another site.
    assert "http://" not in page.text and "https://" not in page.text


# ---------------------------------------------------------------- several photos, and base64 JSON bodies

BATCH = "/api/v1/predict/batch"


def test_batch_gives_one_result_per_file_and_one_error_per_bad_file(client: TestClient, predictor: Predictor,
                                                                     crops: list[bytes]):
    files = [
        ("files", ("first.jpg", crops[0], "image/jpeg")),
        ("files", ("junk.jpg", b"this is not a photo at all" * 20, "image/jpeg")),
        ("files", ("half.jpg", crops[1][: len(crops[1]) // 2], "image/jpeg")),
        ("files", ("notes.txt", crops[2], "text/plain")),
        ("files", ("last.jpg", crops[3], "image/jpeg")),
    ]
    response = client.post(BATCH, files=files)
    assert response.status_code == 200, response.text
    results = response.json()
    assert [r["path"] for r in results] == ["first.jpg", "junk.jpg", "half.jpg", "notes.txt", "last.jpg"]
    # The good photos: exactly what /predict answers for each alone (today's result schema).
    for result, data in ((results[0], crops[0]), (results[4], crops[3])):
        assert result == post_photo(client, data, result["path"]).json()
        assert result["error"] is None and len(result["faces"]) == 1
    # Each bad one is its own error record, with the reason /predict would give.
    assert "not an image file" in results[1]["error"] and results[1]["faces"] == []
    assert "truncated" in results[2]["error"]
    assert "text/plain is not an image type" in results[3]["error"]


def test_batch_annotates_each_photo(client: TestClient, crops: list[bytes]):
    files = [("files", (f"{n}.jpg", data, "image/jpeg")) for n, data in enumerate(crops[:2])]
    results = client.post(BATCH, params={"annotate": True}, files=files).json()
    assert [r["annotated_image"][:23] for r in results] == ["data:image/jpeg;base64,"] * 2


def test_batch_limits_on_files_and_bytes(predictor: Predictor, crops: list[bytes]):
    few = TestClient(create_app(predictor=predictor, max_files_per_request=2))
    files = [("files", (f"{n}.jpg", data, "image/jpeg")) for n, data in enumerate(crops[:3])]
    response = few.post(BATCH, files=files)
    assert response.status_code == 413 and "at most 2 photos per request" in response.json()["detail"]
    assert few.post(BATCH, files=files[:2]).status_code == 200

    # All photos together over the request limit (each within the photo limit): the whole request is refused.
    padded = [("files", (f"{n}.jpg", data + b"\0" * 30_000, "image/jpeg")) for n, data in enumerate(crops[:3])]
    small = TestClient(create_app(predictor=predictor, max_request_bytes=1000))
    response = small.post(BATCH, files=padded)
    assert response.status_code == 413 and "over the limit of" in response.json()["detail"]
    # Sent without a Content-Length: caught on the bytes received.
    request = small.build_request("POST", BATCH, files=padded)
    body = request.read()
    response = small.post(BATCH, content=(body[i:i + 4096] for i in range(0, len(body), 4096)),
                          headers={"Content-Type": request.headers["Content-Type"]})
    assert response.status_code == 413

    # One photo over the per-photo limit: that photo's error, the others analysed.
    limit = max(len(data) for data in crops[:2]) + 1
    big = crops[2] + b"\0" * limit
    results = TestClient(create_app(predictor=predictor, max_upload_bytes=limit)).post(
        BATCH, files=files[:2] + [("files", ("big.jpg", big, "image/jpeg"))]).json()
    assert [r["error"] is None for r in results] == [True, True, False]
    assert "over the limit" in results[2]["error"]


def test_batch_errors_for_the_whole_request(client: TestClient, crops: list[bytes]):
    response = client.post(BATCH, files={"note": (None, "a field, not a file")})
    assert response.status_code == 422 and "no photos" in response.json()["detail"]
    response = client.post(BATCH, content=crops[0], headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 415 and "multipart/form-data" in response.json()["detail"]
    no_disposition = b"--x\r\nContent-Type: image/jpeg\r\n\r\nno name\r\n--x--\r\n"
    response = client.post(BATCH, content=no_disposition, headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert response.status_code == 400 and "malformed multipart body" in response.json()["detail"]


def test_predict_takes_one_file_and_points_to_the_batch(client: TestClient, crops: list[bytes]):
    files = [("file", (f"{n}.jpg", data, "image/jpeg")) for n, data in enumerate(crops[:2])]
    response = client.post(PREDICT, files=files)
    assert response.status_code == 413 and "/api/v1/predict/batch" in response.json()["detail"]


@pytest.mark.parametrize("form", ["data URL", "plain base64", "DeepFace img_path"])
def test_base64_json_body_gives_the_multipart_answer(client: TestClient, crops: list[bytes], form: str):
    encoded = base64.b64encode(crops[0]).decode("ascii")
    body = {"data URL": {"img": "data:image/jpeg;base64," + encoded, "name": "face.jpg"},
            "plain base64": {"img": encoded, "name": "face.jpg", "actions": ["age", "gender"]},
            "DeepFace img_path": {"img_path": "data:image/jpeg;base64," + encoded, "name": "face.jpg"}}[form]
    response = client.post(PREDICT, json=body, params={"annotate": True})
    assert response.status_code == 200, response.text
    assert response.json() == post_photo(client, crops[0], "face.jpg", annotate=True).json()


def test_base64_json_body_errors(client: TestClient, crops: list[bytes], utkface_files):
    def detail(body, status):
        response = client.post(PREDICT, json=body)
        assert response.status_code == status, response.text
        return response.json()["detail"]

    assert "not valid base64" in detail({"img": "abc$%^"}, 422)
    assert "not an image file" in detail({"img": base64.b64encode(b"plain text, not a photo").decode()}, 415)
    junk_url = "data:image/jpeg;base64," + base64.b64encode(b"plain text, not a photo").decode()
    assert "not an image file" in detail({"img": junk_url}, 415)
    assert "truncated" in detail({"img": base64.b64encode(crops[0][:2000]).decode()}, 422)
    assert "text/plain is not an image type" in detail({"img": "data:text/plain;base64,aGVsbG8="}, 415)
    assert 'send JSON {"img"' in detail({"image": base64.b64encode(crops[0]).decode()}, 422)
    response = client.post(PREDICT, content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    # A path or URL is refused, never read or fetched: not even a real photo on this very machine.
    for reference in (str(utkface_files[0]), "photos/me.jpg", "C:\\photos\\me.jpg", "/etc/passwd",
                      "https://example.org/me.jpg", "file:///etc/passwd"):
        assert "never reads files from its own disk or fetches URLs" in detail({"img": reference}, 422), reference


def test_base64_json_body_size_limit(predictor: Predictor, crops: list[bytes]):
    limit = len(crops[0]) - 1
    small = TestClient(create_app(predictor=predictor, max_upload_bytes=limit))
    response = small.post(PREDICT, json={"img": base64.b64encode(crops[0]).decode()})
    assert response.status_code == 413 and "over the limit" in response.json()["detail"]
    padded = {"img": base64.b64encode(crops[0] * 4).decode()}  # the body itself past the limit
    assert small.post(PREDICT, json=padded).status_code == 413


def test_openapi_documents_both_bodies_the_batch_and_its_limits(client: TestClient):
    schema = client.get("/openapi.json").json()
    body = schema["paths"][PREDICT]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "application/json"}
    assert body["application/json"]["schema"]["required"] == ["img"]
    batch = schema["paths"][BATCH]["post"]
    assert "files" in batch["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert "max_files_per_request" in batch["description"] and "413" in batch["description"]
    assert "path or URL" in schema["paths"][PREDICT]["post"]["description"]
    # The documented examples are real requests that work.
    for example in body["application/json"]["examples"].values():
        response = client.post(PREDICT, json=example["value"])
        assert response.status_code == 200 and response.json()["faces"] == []


# ---------------------------------------------------------------- confidence thresholds


def test_thresholds_apply_to_one_photo_the_batch_and_the_base64_body(client: TestClient, predictor: Predictor,
                                                                     crops: list[bytes]):
    """Every head's bar at 100%: no answer is given (probabilities kept); "none": every answer is."""
    every_head = ",".join(f"{head.name}=1" for head in predictor.info.heads)
    single = client.post(PREDICT, params={"thresholds": every_head},
                         files={"file": ("a.jpg", crops[0], "image/jpeg")}).json()
    batch = client.post(BATCH, params={"thresholds": every_head},
                        files=[("files", (f"{n}.jpg", data, "image/jpeg")) for n, data in enumerate(crops[:2])]).json()
    as_json = client.post(PREDICT, params={"thresholds": every_head},
                          json={"img": base64.b64encode(crops[0]).decode("ascii"), "name": "a.jpg"}).json()
    for result in (single, *batch, as_json):
        face = result["faces"][0]
        # Withheld unless the model put every bit of its probability on one answer.
        assert face["age"]["bin"] == answer(face["age"]["bin_probs"], 1.0)
        assert face["age"]["years"] is None or face["age"]["bin"] != UNCERTAIN
        assert sum(face["age"]["bin_probs"].values()) == pytest.approx(1, abs=1e-3)
        for head in ("gender", "race"):
            assert face[head]["label"] == answer(face[head]["probs"], 1.0)
        assert UNCERTAIN in (face["age"]["bin"], face["gender"]["label"], face["race"]["label"])
    assert single["faces"] == as_json["faces"] == batch[0]["faces"]
    answered = client.post(PREDICT, params={"thresholds": "none"}, files={"file": ("a.jpg", crops[0], "image/jpeg")})
    face = answered.json()["faces"][0]
    assert UNCERTAIN not in (face["age"]["bin"], face["gender"]["label"], face["race"]["label"])
    assert face["gender"]["label"] == max(face["gender"]["probs"], key=face["gender"]["probs"].get)


@pytest.mark.parametrize("given, words", [("mood=0.5", "no head 'mood'"), ("gender=1.5", "between 0 and 1"),
                                          ("gender", "HEAD=VALUE")])
def test_a_bad_threshold_is_a_422_with_one_line(client: TestClient, crops: list[bytes], given: str, words: str):
    for path, files in ((PREDICT, {"file": ("a.jpg", crops[0], "image/jpeg")}),
                        (BATCH, [("files", ("a.jpg", crops[0], "image/jpeg"))])):
        response = client.post(path, params={"thresholds": given}, files=files)
        assert response.status_code == 422 and words in response.json()["detail"]
        assert "\n" not in response.json()["detail"]


def test_the_model_card_lists_each_heads_default_threshold(client: TestClient, predictor: Predictor):
    card = client.get("/api/v1/model").json()
    assert list(card["thresholds"]) == [head.name for head in predictor.info.heads]
    assert card["thresholds"] == {name: DEFAULT_THRESHOLDS.get(name, 0.0) for name in card["thresholds"]}
