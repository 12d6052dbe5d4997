"""The routes: the REST API under /api/v1 and the OpenAPI docs page at /docs (Swagger UI from local
files, the swagger-ui-bundle-v2 package: nothing is loaded from the internet)."""

from __future__ import annotations

import base64
import io
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import anyio.to_thread
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from facescope import labels
from facescope.faces import ImageReadError, read_image
from facescope.bundles.card import card_json
from facescope.heads import DEFAULT_THRESHOLDS, parse_thresholds
from facescope.inference.error_figures import withhold_uncertain_faces
from facescope.inference.predictor import Predictor
from facescope.inference.results import ImageResult
from facescope.serving.annotate import annotate_image
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
    gender: list[str]
    race: list[str]
    age_bins: list[str]


class ModelCard(BaseModel):
    name: str
    backbone: str
    input_size: int
    age_mode: str = Field(description='"years": expected age in years and bins; "bins": age bins only')
    race_taxonomy: str
    labels: ModelLabels
    training_data: dict[str, Any]
    licence: str
    intended_use: str
    must_not_be_used_for: list[str]
    evaluation: dict[str, Any] = Field(
        description="figures overall and per group, as recorded in model.json (empty until evaluated)"
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


_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary", "description": "one photo"}},
        }}},
    }
}
_PREDICT_ERRORS: dict[int | str, dict[str, Any]] = {
    408: {"model": ErrorDetail, "description": "the upload took longer than the body time limit"},
    413: {"model": ErrorDetail, "description": "the upload is over the size limit"},
    415: {"model": ErrorDetail, "description": "not an image (by its declared type or its bytes)"},
    422: {"model": ErrorDetail, "description": "a truncated or corrupt image, a decompression bomb, or a "
                                               "detection option out of range"},
    504: {"model": ErrorDetail, "description": "the prediction took longer than the time limit"},
}

api = APIRouter(prefix="/api/v1")


@api.post("/predict", openapi_extra=_UPLOAD_BODY, responses=_PREDICT_ERRORS)
async def predict(
    request: Request,
    annotate: bool = False,
    detection_size: int | None = Query(None, ge=32, le=8192, description="longer side the photo is "
                                       "detected at, in px: larger finds smaller faces, slower"),
    score_threshold: float | None = Query(None, ge=0.0, le=1.0, description="lowest detector score kept"),
    min_face_size: float | None = Query(None, ge=0, le=10_000, description="smallest face kept, in px"),
    max_faces: int | None = Query(None, ge=1, description="most faces analysed, the largest first (at most "
                                  "the server's own cap); `faces_found` says how many there were"),
    thresholds: str | None = Query(None, description="HEAD=P items, comma-separated: a head whose top "
                                   "probability is below P answers \"uncertain\" (its probabilities are kept); "
                                   "\"none\" answers everything; default "
                                   + ",".join(f"{h}={p:g}" for h, p in DEFAULT_THRESHOLDS.items())),
) -> PredictionResult:
    """Age, gender and race estimates for every face in one photo (at most `max_faces`, largest first)."""
    state = _state(request)
    settings = state.settings
    predictor = _predictor(request)
    if max_faces is not None and max_faces > settings.max_faces:
        raise HTTPException(422, f"max_faces is at most {settings.max_faces} on this server")
    try:
        bars = parse_thresholds(thresholds, predictor.info.heads)
    except ValueError as error:
        raise HTTPException(422, str(error)) from None
    detection = {"detection_size": detection_size or settings.detection_size,
                 "score_threshold": settings.score_threshold if score_threshold is None else score_threshold,
                 "min_face_size": settings.min_face_size if min_face_size is None else min_face_size,
                 "max_faces": max_faces or settings.max_faces}
    filename, data = await _read_upload(request, settings)

    def run_prediction() -> PredictionResult:
        with state.gate:
            result = withhold_uncertain_faces(predictor.predict_image(data, name=filename, **detection), bars)
            answer = PredictionResult(**dict(result))
            if annotate:
                answer.annotated_image = _jpeg_data_url(annotate_image(read_image(data), result.faces))
            return answer

    try:
        with anyio.fail_after(settings.request_timeout_s):
            # In a worker thread, so the event loop keeps serving; on timeout the request is answered
            # and the thread is left to finish on its own.
            return await anyio.to_thread.run_sync(run_prediction, abandon_on_cancel=True)
    except TimeoutError:
        raise HTTPException(504, f"the prediction took longer than {settings.request_timeout_s:g} s") from None
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
        labels=ModelLabels(gender=list(labels.GENDERS), race=list(info.race_labels),
                           age_bins=list(labels.AGE_BIN_LABELS)),
        training_data=info.training_data, licence=info.licence, intended_use=info.intended_use,
        must_not_be_used_for=list(info.must_not_be_used_for), evaluation=info.evaluation, card=card_json(info),
    )


@api.get("/health")
def health(request: Request) -> Health:
    """Answers once the model is loaded, which happens before the app starts serving."""
    return Health(status="ok", model_loaded=True, model=_predictor(request).info.name)


async def _read_upload(request: Request, settings: Settings) -> tuple[str, bytes]:
    """(filename, bytes) of the multipart field `file`, read into memory with the size limit enforced
    on the declared Content-Length and on the bytes actually received, within the body time limit."""
    max_bytes = settings.max_upload_bytes
    too_big = f"the upload is over the limit of {max_bytes / 1024 / 1024:g} MB"
    body_limit = max_bytes + MULTIPART_OVERHEAD
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > body_limit:
        raise HTTPException(413, too_big)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise HTTPException(415, "send the photo as multipart/form-data, in the field `file`")

    async def capped_body():
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > body_limit:
                raise HTTPException(413, too_big)
            yield chunk

    parser = MultiPartParser(request.headers, capped_body(), max_files=1, max_fields=10)
    # Above the body limit, so the spooled file never rolls over to disk.
    parser.spool_max_size = body_limit + 1
    try:
        with anyio.fail_after(settings.body_timeout_s):
            form = await parser.parse()
    except TimeoutError:
        raise HTTPException(408, f"the upload took longer than {settings.body_timeout_s:g} s",
                            headers={"Connection": "close"}) from None
    except MultiPartException as error:
        raise HTTPException(400, f"malformed multipart body: {error.message}") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise HTTPException(422, "no photo: send it in the multipart field `file`")
        data = await upload.read()
        content_type = upload.content_type
    finally:
        await form.close()
    if len(data) > max_bytes:
        raise HTTPException(413, too_big)
    if content_type not in GENERIC_CONTENT_TYPES and not content_type.startswith("image/"):
        raise HTTPException(415, f"{content_type} is not an image type")
    if not _is_image(data):
        raise HTTPException(415, "the upload is not an image file (no known image format recognised)")
    return upload.filename or "upload", data


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
