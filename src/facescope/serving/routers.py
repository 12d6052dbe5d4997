"""The routes: the REST API under /api/v1 and the OpenAPI docs page at /docs (Swagger UI from local
files, the swagger-ui-bundle-v2 package: nothing is loaded from the internet)."""

from __future__ import annotations

import base64
import binascii
import inspect
import io
import logging
import re
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import anyio.to_thread
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from PIL import Image, UnidentifiedImageError
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from facescope.faces import ImageReadError
from facescope.faces import options as face_options
from facescope.heads import DEFAULT_THRESHOLDS, Head, labels_by_output, parse_thresholds
from facescope.bundles.card import card_json
from facescope.inference.predictor import Predictor
from facescope.inference.results import ImageResult, csv_columns, head_columns
from facescope.serving.security import ClientGone, ClientWork, run_for_client
from facescope.serving.settings import Settings

log = logging.getLogger(__name__)
# Room for the multipart boundaries and part headers around the file itself.
MULTIPART_OVERHEAD = 64 * 1024
# Browsers and curl name a file's type from its extension; a missing or generic type is judged by the bytes.
GENERIC_CONTENT_TYPES = {None, "", "application/octet-stream"}


@dataclass
class ServerState:
    """What the routes share: the settings, the predictor (loaded by the app's lifespan unless given),
    and the gate that bounds how many photos are analysed at once (decoding is bounded further by the
    intake's pixel budget). The gate is a thread semaphore, held inside the worker thread: a prediction
    abandoned at its time limit keeps its place until it really ends, so timeouts cannot pile up work."""

    settings: Settings
    predictor: Predictor | None = None
    gate: threading.BoundedSemaphore = field(init=False)

    def __post_init__(self):
        self.gate = threading.BoundedSemaphore(self.settings.max_concurrent_predictions)


def _state(request: Request) -> ServerState:
    return request.app.state.facescope


def _predictor(request: Request) -> Predictor:
    predictor = _state(request).predictor
    if predictor is None:
        raise HTTPException(503, "the model is still loading")
    return predictor


class PredictionResult(ImageResult):
    """An ImageResult, plus the annotated photo when asked for; without it, the JSON is exactly the
    line `facescope predict --format jsonl` prints."""

    annotated_image: str | None = Field(
        default=None, exclude_if=lambda value: value is None,
        description="with ?annotate=true: the photo with numbered face boxes, as a data:image/jpeg;base64 URL",
    )


class ModelLabels(BaseModel):
    """Each output's labels, under its name (an age output's groups under `<name>_bins`); a model without
    one of the usual three leaves it out, a further output appears under its own name."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, list[str]] = Field(init=False)

    gender: list[str] | None = Field(default=None, exclude_if=lambda value: value is None)
    race: list[str] | None = Field(default=None, exclude_if=lambda value: value is None)
    age_bins: list[str] | None = Field(default=None, exclude_if=lambda value: value is None)


class ModelHead(BaseModel):
    """One output of the model (facescope.heads.Head), as a client needs it to show and write its answers."""

    name: str = Field(description="the output's key in every face of a prediction")
    kind: Literal["label", "age_years", "age_bins"] = Field(
        description='"label": a label with its probabilities (`label`, `probs`); "age_years": years and the '
                    'age group (`years`, `years_std`, `bin`, `bin_probs`); "age_bins": the age group only')
    taxonomy: str | None = Field(description="a label output's taxonomy (facescope.labels); null for an age output")
    labels: list[str] = Field(description="a label output's labels, an age output's age groups, in order")
    csv_columns: list[str] = Field(description="its two CSV columns: `<name>`, `<name>_prob` for a label output "
                                               "(the answer, its top probability); `<name>_years`, `<name>_bin` for "
                                               "an age output")

    @classmethod
    def of(cls, head: Head) -> "ModelHead":
        return cls(name=head.name, kind=head.kind, taxonomy=head.taxonomy,
                   labels=list(head.answers), csv_columns=list(head_columns(head)))


class ModelCard(BaseModel):
    name: str
    backbone: str
    input_size: int
    age_mode: str | None = Field(description='"years": expected age in years and bins; "bins": age bins only; '
                                             'null: the model has no age output')
    race_taxonomy: str | None = Field(description="the taxonomy of the race labels; null: no race output")
    labels: ModelLabels
    heads: list[ModelHead] = Field(description="the model's outputs, in its order: what each face of a "
                                               "prediction holds besides its box")
    csv_columns: list[str] = Field(description="the columns of the model's results as CSV, as `facescope predict "
                                               "--format csv` writes them (facescope.inference.results.csv_columns)")
    training_data: dict[str, Any]
    licence: str
    intended_use: str
    must_not_be_used_for: list[str]
    evaluation: dict[str, Any] = Field(
        description="figures overall and per group, as recorded in model.json (empty until evaluated)"
    )
    thresholds: dict[str, float] = Field(
        description="each head's default confidence threshold: below it the head answers \"uncertain\" "
                    "(`thresholds` of /api/v1/predict sets others)"
    )
    card: dict[str, Any] = Field(
        description='the model card, section by section: {"sections": [{"title", "paragraphs", "tables": '
                    '[{"columns", "rows"}]}]} (facescope.bundles.card.card_json)'
    )


class Health(BaseModel):
    status: Literal["ok"]
    model_loaded: bool
    model: str


class ErrorDetail(BaseModel):
    detail: str


class Base64Image(BaseModel):
    """A photo inside a JSON body, as DeepFace's API takes it. Other keys (DeepFace's `actions`,
    `detector_backend`, ...) are ignored."""

    model_config = ConfigDict(extra="ignore")

    img: str = Field(validation_alias=AliasChoices("img", "img_path"), description=(
        "the photo's bytes, base64-encoded: a data URL (`data:image/jpeg;base64,...`) or plain base64. A file "
        "path or URL is refused: this server never reads its own disk or fetches anything for a request "
        "(`img_path`, DeepFace's older name, is accepted for the same base64 content)"))
    name: str = Field(default="upload", max_length=255, description="a name for the photo, returned as `path`")


def _example_jpeg() -> str:
    """A small grey JPEG in base64: a real, complete example body (it has no face, so its answer has none)."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (128, 128, 128)).save(buffer, format="JPEG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


_EXAMPLE_JPEG = _example_jpeg()
_PHOTO_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["file"], "properties": {
                    "file": {"type": "string", "format": "binary", "description": "one photo"}}},
                "examples": {"curl": {"summary": "curl -F file=@photo.jpg http://127.0.0.1:8000/api/v1/predict",
                                      "value": {"file": "(the photo's bytes)"}}},
            },
            "application/json": {
                "schema": Base64Image.model_json_schema(mode="validation"),
                "examples": {
                    "data URL": {"summary": "a data URL, as a browser's FileReader makes it",
                                 "value": {"img": "data:image/jpeg;base64," + _EXAMPLE_JPEG}},
                    "plain base64": {"summary": "plain base64 (DeepFace style), with a name",
                                     "value": {"img": _EXAMPLE_JPEG, "name": "white.jpg"}},
                },
            },
        },
    }
}
_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {
            "schema": {"type": "object", "required": ["files"], "properties": {"files": {
                "type": "array", "items": {"type": "string", "format": "binary"},
                "description": "the photos, one file part each (at most `max_files_per_request`)"}}},
            "examples": {"curl": {
                "summary": "curl -F files=@a.jpg -F files=@b.png http://127.0.0.1:8000/api/v1/predict/batch",
                "value": {"files": ["(a.jpg's bytes)", "(b.png's bytes)"]}}},
        }},
    }
}
_REQUEST_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorDetail, "description": "a malformed multipart body"},
    408: {"model": ErrorDetail, "description": "the upload took longer than the body time limit"},
    413: {"model": ErrorDetail, "description": "the upload is over the size limit (or too many files)"},
}
_PREDICT_ERRORS: dict[int | str, dict[str, Any]] = _REQUEST_ERRORS | {
    415: {"model": ErrorDetail, "description": "not an image (by its declared type or its bytes), or a body "
                                               "that is neither multipart/form-data nor JSON"},
    422: {"model": ErrorDetail, "description": "a truncated or corrupt image, a decompression bomb, a detection "
                                               "option out of range, JSON that is not {\"img\": base64}, or a "
                                               "path or URL in place of the image (never read or fetched)"},
    504: {"model": ErrorDetail, "description": "the prediction took longer than the time limit"},
}
_BATCH_ERRORS: dict[int | str, dict[str, Any]] = _REQUEST_ERRORS | {
    415: {"model": ErrorDetail, "description": "a body that is not multipart/form-data"},
    422: {"model": ErrorDetail, "description": "no file part, or a detection option out of range"},
}

api = APIRouter(prefix="/api/v1")


def detection_options(request: Request, **detection: Any) -> dict[str, Any]:
    """The detection options of a request, the server's settings filling in what it leaves out. Its
    query parameters are facescope.faces.options's fields (the signature below)."""
    settings = _state(request).settings
    if (detection["max_faces"] or 0) > settings.max_faces:
        raise HTTPException(422, f"max_faces is at most {settings.max_faces} on this server")
    return {name: getattr(settings, name) if value is None else value for name, value in detection.items()}


def _query(name: str) -> Any:
    low, high = face_options.bounds(name)
    cap = "; a request may ask for at most the server's own setting" if name == "max_faces" else ""
    return Query(None, ge=low, le=high, description=face_options.DetectionOptions.model_fields[name].description + cap)


detection_options.__signature__ = inspect.Signature([
    inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request),
    *face_options.parameters(_query),
])


def threshold_options(
    request: Request,
    thresholds: str | None = Query(None, description="HEAD=P items, comma-separated: a head whose top "
                                   "probability is below P answers \"uncertain\" (its probabilities are kept); "
                                   "\"none\" answers everything; default "
                                   + ",".join(f"{h}={p:g}" for h, p in DEFAULT_THRESHOLDS.items())),
) -> dict[str, float]:
    """The confidence threshold of each head for a request: below it, the head's answer is withheld."""
    try:
        return parse_thresholds(thresholds, _predictor(request).info.heads)
    except ValueError as error:
        raise HTTPException(422, str(error)) from None


@api.post("/predict", openapi_extra=_PHOTO_BODY, responses=_PREDICT_ERRORS)
async def predict(request: Request, annotate: bool = False,
                  detection: dict[str, Any] = Depends(detection_options),
                  bars: dict[str, float] = Depends(threshold_options)) -> PredictionResult:
    """Age, gender and race estimates for every face in one photo (at most `max_faces`, largest first).

    The photo comes as a multipart upload (field `file`), or as JSON with the photo's bytes in base64:
    `{"img": "data:image/jpeg;base64,..."}` or `{"img": "<base64>"}`. A path or URL in `img` is refused
    (422): nothing is read from the server's disk or fetched. The photo stays in memory: it is never
    written or logged. Several photos at once: `/api/v1/predict/batch`."""
    settings = _state(request).settings
    predictor = _predictor(request)
    if request.headers.get("content-type", "").startswith("application/json"):
        filename, data = await _read_json_photo(request, settings)
    else:
        async with _read_form(request, settings, settings.max_upload_bytes + MULTIPART_OVERHEAD, max_files=1,
                              too_many="one photo per request here: send several to /api/v1/predict/batch") as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise HTTPException(422, "no photo: send it in the multipart field `file`")
            filename, data, content_type = upload.filename or "upload", await upload.read(), upload.content_type
        _check_photo(data, content_type, settings)
    return await _predict(request, predictor, data, filename, detection, bars, annotate)


@api.post("/predict/batch", openapi_extra=_BATCH_BODY, responses=_BATCH_ERRORS)
async def predict_batch(request: Request, annotate: bool = False,
                        detection: dict[str, Any] = Depends(detection_options),
                        bars: dict[str, float] = Depends(threshold_options)) -> list[PredictionResult]:
    """Several photos in one multipart request (one file part each, field `files`): one result per
    photo, in order, each exactly what `/api/v1/predict` answers for it. A photo that cannot be
    analysed (not an image, too large, truncated, out of time) is its own result with `error` set; the
    others are analysed as usual.

    Limits: at most `max_files_per_request` photos (20 by default) and `max_request_bytes` (50 MB) in
    all, each photo at most `max_upload_bytes` (10 MB); over them, the whole request is answered 413."""
    settings = _state(request).settings
    predictor = _predictor(request)
    async with _read_form(request, settings, settings.max_request_bytes + MULTIPART_OVERHEAD,
                          max_files=settings.max_files_per_request,
                          too_many=f"at most {settings.max_files_per_request} photos per request") as form:
        uploads = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        if not uploads:
            raise HTTPException(422, "no photos: send each in a multipart file part (field `files`)")
        results = []
        for upload in uploads:
            filename = upload.filename or "upload"
            try:
                data = await upload.read()
                _check_photo(data, upload.content_type, settings)
                results.append(await _predict(request, predictor, data, filename, detection, bars, annotate))
            except HTTPException as error:  # this photo's error; the others go on
                results.append(PredictionResult(path=filename, model=predictor.info.name, error=str(error.detail)))
            finally:
                await upload.close()  # each photo's bytes go as soon as it is done
    return results


async def _predict(request: Request, predictor: Predictor, data: bytes, filename: str, detection: dict[str, Any],
                   bars: dict[str, float], annotate: bool) -> PredictionResult:
    """One photo's answer, within the time limit and the server's gate; its failures as HTTP errors."""
    state = _state(request)
    settings = state.settings

    def run_prediction(client: ClientWork) -> PredictionResult:
        # Each stage starts only while the client still waits: a request past its deadline or whose
        # client hung up gives its place in the gate to the next one.
        if not state.gate.acquire(timeout=client.remaining()):
            raise TimeoutError
        try:
            client.check()
            result = predictor.predict_image(data, name=filename, thresholds=bars, **detection)
            answer = PredictionResult(**dict(result))
            if annotate:
                client.check()
                answer.annotated_image = _jpeg_data_url(result.draw(data, settings.annotate_max_side))
            return answer
        finally:
            state.gate.release()

    try:
        return await run_for_client(request, run_prediction, settings.request_timeout_s)
    except TimeoutError:
        raise HTTPException(504, f"the prediction took longer than {settings.request_timeout_s:g} s") from None
    except ClientGone:
        log.info("client disconnected before its prediction was ready: abandoned")
        return Response(status_code=499)  # nginx's "client closed request": nobody reads it
    except ImageReadError as error:
        raise HTTPException(422, str(error)) from None
    except Exception:
        # Answered as a plain 500 (the connection stays usable); the cause goes to the log, the photo never.
        log.exception("internal error predicting an upload")
        raise HTTPException(500, "internal error while analysing the photo") from None


@api.get("/model")
def model_card(request: Request) -> ModelCard:
    """What the model is, what it was trained on, what it is for and not for, and its figures per group."""
    info = _predictor(request).info
    return ModelCard(
        name=info.name, backbone=info.backbone, input_size=info.input_size, age_mode=info.age_mode,
        race_taxonomy=info.race_taxonomy,
        labels=ModelLabels(**labels_by_output(info.heads)),
        heads=[ModelHead.of(head) for head in info.heads], csv_columns=csv_columns(info.heads),
        training_data=info.training_data, licence=info.licence, intended_use=info.intended_use,
        must_not_be_used_for=list(info.must_not_be_used_for), evaluation=info.evaluation,
        thresholds={head.name: DEFAULT_THRESHOLDS.get(head.name, 0.0) for head in info.heads}, card=card_json(info),
    )


@api.get("/health")
def health(request: Request) -> Health:
    """Answers once the model is loaded, which happens before the app starts serving."""
    return Health(status="ok", model_loaded=True, model=_predictor(request).info.name)


def _too_big(limit: int) -> str:
    return f"the upload is over the limit of {limit / 1024 / 1024:g} MB"


async def _read_body(request: Request, body_limit: int, too_big: str):
    """The request's body as it arrives, the size limit enforced on the declared Content-Length and on
    the bytes actually received."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > body_limit:
        raise HTTPException(413, too_big)
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > body_limit:
            raise HTTPException(413, too_big)
        yield chunk


async def _within_body_time(settings: Settings, reading):
    try:
        with anyio.fail_after(settings.body_timeout_s):
            return await reading
    except TimeoutError:
        raise HTTPException(408, f"the upload took longer than {settings.body_timeout_s:g} s",
                            headers={"Connection": "close"}) from None


@asynccontextmanager
async def _read_form(request: Request, settings: Settings, body_limit: int, max_files: int, too_many: str):
    """The multipart form, read into memory (never spooled to disk) within the size and time limits, and
    closed when the block ends."""
    too_big = _too_big(body_limit - MULTIPART_OVERHEAD)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise HTTPException(415, "send the photo as multipart/form-data (field `file`; `files` for a batch) or "
                                 'as JSON {"img": "<base64>"}')
    parser = MultiPartParser(request.headers, _read_body(request, body_limit, too_big),
                             max_files=max_files, max_fields=10)
    # Above the body limit, so the spooled files never roll over to disk.
    parser.spool_max_size = body_limit + 1
    try:
        form = await _within_body_time(settings, parser.parse())
    except MultiPartException as error:
        if error.message.startswith("Too many files"):
            raise HTTPException(413, too_many) from None
        raise HTTPException(400, f"malformed multipart body: {error.message}") from None
    try:
        yield form
    finally:
        await form.close()


async def _read_json_photo(request: Request, settings: Settings) -> tuple[str, bytes]:
    """(name, bytes) of the photo in a JSON body {"img": base64 or data URL}."""
    max_bytes = settings.max_upload_bytes
    # Base64 takes 4 bytes per 3; room beside it for the data URL's prefix and the JSON around it.
    body_limit = -(-max_bytes // 3) * 4 + MULTIPART_OVERHEAD
    body = await _within_body_time(settings, _collect(_read_body(request, body_limit, _too_big(max_bytes))))
    try:
        photo = Base64Image.model_validate_json(body)
    except ValidationError:
        raise HTTPException(422, 'send JSON {"img": "data:image/jpeg;base64,..."} or {"img": "<base64>"}') from None
    data = _decode_base64_photo(photo.img)
    if len(data) > max_bytes:
        raise HTTPException(413, _too_big(max_bytes))
    _check_photo(data, None, settings)
    return photo.name, data


async def _collect(chunks) -> bytes:
    return b"".join([chunk async for chunk in chunks])


NOT_READ_OR_FETCHED = ("`img` holds a path or URL: this server never reads files from its own disk or fetches "
                       "URLs for a request. Send the photo itself, base64-encoded (plain or as a data URL)")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _names_a_file(text: str) -> bool:
    """Whether `img` reads as a file path rather than base64 (which has no dots, colons or backslashes)."""
    return len(text) < 4096 and (text.startswith(("/", "~", "./", "../")) or bool(re.search(r"[.:\\]", text)))


def _decode_base64_photo(text: str) -> bytes:
    """The bytes of a data URL or plain base64; a URL or path is refused, never fetched or read."""
    text = text.strip()
    if text.startswith("data:"):
        header, comma, text = text.partition(",")
        if not comma or not header.endswith(";base64"):
            raise HTTPException(422, "a data URL must be base64: data:image/jpeg;base64,...")
        declared = header[len("data:"):-len(";base64")]
        if declared and not declared.startswith("image/"):
            raise HTTPException(415, f"{declared} is not an image type")
    elif _URL.match(text):
        raise HTTPException(422, NOT_READ_OR_FETCHED)
    elif _names_a_file(text) and not _is_image(_base64_or_none(text) or b""):
        raise HTTPException(422, NOT_READ_OR_FETCHED)  # "/etc/passwd" is valid base64 too
    data = _base64_or_none(text)
    if data is None:
        raise HTTPException(422, "`img` is not valid base64")
    return data


def _base64_or_none(text: str) -> bytes | None:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def _check_photo(data: bytes, content_type: str | None, settings: Settings) -> None:
    """Refuses a photo over the size limit (413) or one that is not an image by its type or bytes (415)."""
    if len(data) > settings.max_upload_bytes:
        raise HTTPException(413, _too_big(settings.max_upload_bytes))
    if content_type not in GENERIC_CONTENT_TYPES and not content_type.startswith("image/"):
        raise HTTPException(415, f"{content_type} is not an image type")
    if not _is_image(data):
        raise HTTPException(415, "the upload is not an image file (no known image format recognised)")


def _is_image(data: bytes) -> bool:
    """Whether an image decoder recognises the file's header; it may still be truncated or a bomb,
    which reading it tells (422), as opposed to not being an image at all (415)."""
    try:
        Image.open(io.BytesIO(data)).close()
    except UnidentifiedImageError:
        return False
    except Exception:  # recognised, but broken or hostile: reading it says how (422)
        return True
    return True


def _jpeg_data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


docs = APIRouter(include_in_schema=False)
DOCS_ASSETS = "/docs/assets"
_DOCS_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>facescope API</title>
<link rel="stylesheet" href="{DOCS_ASSETS}/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="{DOCS_ASSETS}/swagger-ui-bundle.js"></script><script src="/docs/init.js"></script></body></html>
"""
# In a file of its own rather than inline: the Content-Security-Policy allows scripts from this origin only.
_DOCS_INIT = """window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
  validatorUrl: null, presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout"});
"""


@docs.get("/docs")
def docs_page() -> HTMLResponse:
    return HTMLResponse(_DOCS_PAGE)


@docs.get("/docs/init.js")
def docs_init() -> Response:
    return Response(_DOCS_INIT, media_type="text/javascript")
