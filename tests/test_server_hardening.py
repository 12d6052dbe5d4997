"""The server facing a network: security headers and no-store on every answer, settings from FACESCOPE_*
variables, local docs, CORS closed by default, and, on a real uvicorn, keep-alive after a 500, the
header and body timeouts, and other clients served while a slow one is held."""

from __future__ import annotations

import http.client
import socket
import threading
import time

import pytest
from fastapi.testclient import TestClient

from facescope.inference.predictor import Predictor
from facescope.serving.app import create_app
from facescope.serving.security import header_timeout_protocol, is_loopback
from facescope.serving.settings import Settings

SECURITY_HEADERS = ("content-security-policy", "x-content-type-options", "x-frame-options", "referrer-policy")


class BrokenPredictor(Predictor):
    """Fails on a photo named `bug.jpg`, as a bug would."""

    def predict_image(self, image, aligned=False, *, name=None, **options):
        if name == "bug.jpg":
            raise RuntimeError("simulated bug")
        return super().predict_image(image, aligned, name=name, **options)


@pytest.fixture(scope="module")
def broken(bundle_dir) -> BrokenPredictor:
    return BrokenPredictor(bundle_dir)


def upload(data: bytes, name: str = "face.jpg"):
    return {"file": (name, data, "image/jpeg")}


def test_every_answer_has_the_security_headers_and_uploads_no_store(broken, utkface_files):
    client = TestClient(create_app(predictor=broken, max_upload_bytes=50_000))
    face = utkface_files[0].read_bytes()
    answers = {
        200: client.post("/api/v1/predict", files=upload(face)),
        "page": client.get("/"),
        404: client.get("/no-such-page"),
        413: client.post("/api/v1/predict", files=upload(b"\xff" * 60_000)),
        415: client.post("/api/v1/predict", files=upload(b"text")),
        422: client.post("/api/v1/predict", files=upload(face[:500])),
        "422 option": client.post("/api/v1/predict", params={"score_threshold": 5}, files=upload(face)),
        500: client.post("/api/v1/predict", files=upload(face, "bug.jpg")),
    }
    for status, response in answers.items():
        if isinstance(status, int):
            assert response.status_code == status, (status, response.text)
        for header in SECURITY_HEADERS:
            assert header in response.headers, (status, header)
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        if status != "page":
            assert response.headers.get("cache-control") == "no-store" or status == 404, status
    assert answers[500].json() == {"detail": "internal error while analysing the photo"}  # no trace, no photo


def test_detection_options_as_query_parameters(predictor, utkface_files):
    client = TestClient(create_app(predictor=predictor, max_faces=3))
    face = utkface_files[0].read_bytes()
    assert client.post("/api/v1/predict", params={"max_faces": 4}, files=upload(face)).status_code == 422
    none = client.post("/api/v1/predict", params={"min_face_size": 5000}, files=upload(face)).json()
    assert none["faces_found"] == 0 and none["faces"] == []
    one = client.post("/api/v1/predict", params={"detection_size": 320, "score_threshold": 0.5}, files=upload(face))
    assert one.json()["faces_found"] == 1


def test_settings_come_from_facescope_variables(monkeypatch, predictor):
    monkeypatch.setenv("FACESCOPE_MAX_FACES", "7")
    monkeypatch.setenv("FACESCOPE_CORS_ORIGINS", "https://a.example, https://b.example")
    settings = Settings()
    assert settings.max_faces == 7 and settings.cors_origin_list == ["https://a.example", "https://b.example"]
    client = TestClient(create_app(predictor=predictor))
    allowed = client.get("/api/v1/health", headers={"Origin": "https://a.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://a.example"
    monkeypatch.setenv("FACESCOPE_MAX_FACES", "0")
    with pytest.raises(ValueError, match="max_faces"):
        Settings()


def test_cors_is_closed_unless_configured(predictor):
    response = TestClient(create_app(predictor=predictor)).get("/api/v1/health", headers={"Origin": "https://evil.example"})
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers


def test_docs_come_from_local_files(predictor):
    client = TestClient(create_app(predictor=predictor))
    page = client.get("/docs")
    assert page.status_code == 200 and "http://" not in page.text and "https://" not in page.text
    for asset in ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css", "/docs/init.js"):
        assert client.get(asset).status_code == 200, asset
    assert client.get("/openapi.json").json()["paths"]["/api/v1/predict"]["post"]


def test_loopback_hosts():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")


@pytest.fixture(scope="module")
def live_server(broken):
    """uvicorn on a loopback port with short timeouts: 1 s for headers, 1 s for an upload's body."""
    import uvicorn

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    app = create_app(predictor=broken, body_timeout_s=1.0)
    config = uvicorn.Config(app, log_level="warning", http=header_timeout_protocol(1.0), timeout_keep_alive=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    yield listener.getsockname()
    server.should_exit = True
    thread.join(timeout=10)


def multipart(data: bytes, name: str) -> tuple[bytes, str]:
    boundary = "facescope-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_keep_alive_holds_after_a_500(live_server, utkface_files):
    connection = http.client.HTTPConnection(*live_server, timeout=30)
    body, content_type = multipart(utkface_files[0].read_bytes(), "bug.jpg")
    connection.request("POST", "/api/v1/predict", body, {"Content-Type": content_type})
    failed = connection.getresponse()
    failed.read()
    assert failed.status == 500 and failed.getheader("connection") != "close"
    sock = connection.sock
    connection.request("GET", "/api/v1/health")
    again = connection.getresponse()
    assert again.status == 200 and connection.sock is sock  # the same connection answered


def test_a_slow_client_is_closed_at_its_timeout_while_others_are_served(live_server):
    slow = socket.create_connection(live_server)
    slow.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")  # headers never finished
    start = time.monotonic()
    connection = http.client.HTTPConnection(*live_server, timeout=5)
    connection.request("GET", "/api/v1/health")
    assert connection.getresponse().status == 200  # served while the slow one waits
    slow.settimeout(10)
    assert slow.recv(100) == b""  # closed by the server
    assert 0.8 < time.monotonic() - start < 5


def test_an_upload_sent_too_slowly_gets_408(live_server, utkface_files):
    body, content_type = multipart(utkface_files[0].read_bytes(), "face.jpg")
    slow = socket.create_connection(live_server)
    slow.sendall(f"POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:100])
    slow.settimeout(10)
    answer = slow.recv(1000)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]


def test_pixel_budget_lets_one_largest_photo_decode_at_a_time():
    from facescope.faces.intake import PixelBudget

    budget, inside, most = PixelBudget(100), [], []

    def decode(pixels: int):
        with budget.take(pixels):
            inside.append(pixels)
            most.append(budget.capacity - budget.free)
            time.sleep(0.05)
            inside.remove(pixels)

    threads = [threading.Thread(target=decode, args=(p,)) for p in (100, 500, 30, 30, 30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert max(most) <= 100 and budget.free == 100 and len(inside) == 0  # 500 counts as the whole budget


class SlowPredictor(Predictor):
    """Takes 1.5 s over a photo named `slow.jpg`, and notes the name of every photo it analyses."""

    analysed: list

    def predict_image(self, image, aligned=False, *, name=None, **options):
        self.analysed.append(name)
        if name == "slow.jpg":
            time.sleep(1.5)
        return super().predict_image(image, aligned, name=name, **options)


@pytest.fixture()
def one_at_a_time_server(bundle_dir):
    """Starts uvicorn analysing one photo at a time, with the given time limit per prediction."""
    import uvicorn

    servers = []

    def start(request_timeout_s: float):
        predictor = SlowPredictor(bundle_dir)
        predictor.analysed = []
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        app = create_app(predictor=predictor, max_concurrent_predictions=1, request_timeout_s=request_timeout_s)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
            time.sleep(0.05)
        return listener.getsockname(), predictor

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


def post_in_thread(address, data: bytes, name: str, answers: dict) -> threading.Thread:
    def post():
        connection = http.client.HTTPConnection(*address, timeout=30)
        body, content_type = multipart(data, name)
        connection.request("POST", "/api/v1/predict", body, {"Content-Type": content_type})
        answers[name] = connection.getresponse().status

    thread = threading.Thread(target=post)
    thread.start()
    return thread


def test_work_for_clients_that_hung_up_is_abandoned(one_at_a_time_server, utkface_files):
    address, predictor = one_at_a_time_server(request_timeout_s=30)
    face = utkface_files[0].read_bytes()
    answers: dict = {}
    first = post_in_thread(address, face, "slow.jpg", answers)  # holds the only place for 1.5 s
    time.sleep(0.3)
    gone = []
    for number in range(5):  # fire and forget: the whole upload, then, once it is in, the connection closed
        body, content_type = multipart(face, f"gone-{number}.jpg")
        gone.append(socket.create_connection(address))
        gone[-1].sendall(f"POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    time.sleep(0.5)  # uploads read: each request waits for the place slow.jpg holds
    for connection in gone:
        connection.close()
    first.join(timeout=30)
    time.sleep(0.5)  # the gone clients' threads take the place after slow.jpg, one by one, and stop at once
    post_in_thread(address, face, "after.jpg", answers).join(timeout=30)
    assert answers == {"slow.jpg": 200, "after.jpg": 200}
    assert predictor.analysed == ["slow.jpg", "after.jpg"]  # nothing computed for the 5 gone clients


def test_work_past_its_deadline_is_abandoned(one_at_a_time_server, utkface_files):
    address, predictor = one_at_a_time_server(request_timeout_s=1.0)
    face = utkface_files[0].read_bytes()
    answers: dict = {}
    first = post_in_thread(address, face, "slow.jpg", answers)
    time.sleep(0.3)
    late = post_in_thread(address, face, "late.jpg", answers)  # waits for the place past its 1 s limit
    first.join(timeout=30)
    late.join(timeout=30)
    time.sleep(0.5)
    assert answers == {"slow.jpg": 504, "late.jpg": 504}
    assert predictor.analysed == ["slow.jpg"]  # late.jpg never started


def test_annotation_of_a_huge_photo_is_drawn_within_the_bound(predictor):
    import base64
    import io

    from PIL import Image

    from tests.bad_inputs import png_bomb

    client = TestClient(create_app(predictor=predictor, annotate_max_side=1024, request_timeout_s=600))
    answer = client.post("/api/v1/predict", params={"annotate": True},
                         files=upload(png_bomb(6_000), "large.png"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["width"], body["height"]) == (6000, 6000)  # sizes and boxes stay in the photo's pixels
    image = Image.open(io.BytesIO(base64.b64decode(body["annotated_image"].partition(",")[2])))
    assert max(image.size) == 1024
