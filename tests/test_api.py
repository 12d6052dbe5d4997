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
from facescope.inference.error_figures import withhold_uncertain_faces
from facescope.inference.predictor import Predictor
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
        expected = withhold_uncertain_faces(next(predictor.predict_images([data], names=[name])), DEFAULT_THRESHOLDS)
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
