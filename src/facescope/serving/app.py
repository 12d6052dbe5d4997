"""The web app and REST API: `create_app()` builds it, `facescope serve` runs it with uvicorn.

    POST /api/v1/predict   one photo (multipart field `file`) -> the ImageResult `facescope predict` prints
    GET  /api/v1/model     the model card: labels, training data, intended use, figures per group
    GET  /api/v1/health    liveness and readiness (the model is loaded)
    GET  /                 the web page (static files; nothing is loaded from the internet)

Uploaded photos stay in memory: they are never written to disk and never logged.
"""

from __future__ import annotations

import base64
import io
import os
import warnings
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.to_thread
from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from facescope import labels
from facescope.faces import ImageReadError, read_image
from facescope.inference.predictor import Predictor
from facescope.inference.results import ImageResult
from facescope.model.card import card_json
from facescope.serving.annotate import annotate_image

STATIC_DIR = Path(__file__).resolve().parent / "static"
# Room for the multipart boundaries and part headers around the file itself.
MULTIPART_OVERHEAD = 64 * 1024
# Browsers and curl name a file's type from its extension; a missing or generic type is judged by the bytes.
GENERIC_CONTENT_TYPES = {None, "", "application/octet-stream"}


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
                    '[{"columns", "rows"}]}]} (facescope.model.card.card_json)'
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
    413: {"model": ErrorDetail, "description": "the upload is over the size limit"},
    415: {"model": ErrorDetail, "description": "not an image (by its declared type or its bytes)"},
    422: {"model": ErrorDetail, "description": "a truncated or corrupt image, or a decompression bomb"},
    504: {"model": ErrorDetail, "description": "the prediction took longer than the time limit"},
}


def create_app(
    predictor: Predictor | None = None,
    bundle: str | Path | None = None,
    max_upload_bytes: int = 10 * 1024 * 1024,
    max_faces: int = 20,
    request_timeout_s: float = 30.0,
) -> FastAPI:
    """The app around one predictor, loaded here (from `bundle`, default: the bundled model) unless given."""
    if predictor is None:
        # One ONNX thread per prediction, and as many predictions at once as there are cores:
        # concurrent requests then use the machine fully without oversubscribing it.
        predictor = Predictor(bundle, threads=1, max_faces=max_faces)
    predictor.detector  # made now, not on the first request
    prediction_slots = anyio.CapacityLimiter(len(os.sched_getaffinity(0)))
    info = predictor.info
    too_big = f"the upload is over the limit of {max_upload_bytes / 1024 / 1024:g} MB"

    def run_prediction(data: bytes, filename: str, annotate: bool) -> PredictionResult:
        image = read_image(data)
        # Largest first, so the cap keeps the most prominent faces.
        faces = predictor.predict(image)[:max_faces]
        result = PredictionResult(path=filename, width=image.shape[1], height=image.shape[0], faces=faces)
        if annotate:
            result.annotated_image = _jpeg_data_url(annotate_image(image, faces))
        return result

    api = APIRouter(prefix="/api/v1")

    @api.post("/predict", openapi_extra=_UPLOAD_BODY, responses=_PREDICT_ERRORS)
    async def predict(request: Request, response: Response, annotate: bool = False) -> PredictionResult:
        """Age, gender and race estimates for every face in one photo (at most `max_faces`, largest first)."""
        filename, data = await _read_upload(request, max_upload_bytes, too_big)
        try:
            with anyio.fail_after(request_timeout_s):
                # In a worker thread, so the event loop keeps serving; on timeout the request is answered
                # and the thread is left to finish on its own.
                result = await anyio.to_thread.run_sync(
                    run_prediction, data, filename, annotate, abandon_on_cancel=True, limiter=prediction_slots
                )
        except TimeoutError:
            raise HTTPException(504, f"the prediction took longer than {request_timeout_s:g} s") from None
        except ImageReadError as error:
            raise HTTPException(422, str(error)) from None
        response.headers["Cache-Control"] = "no-store"
        return result

    @api.get("/model")
    def model_card() -> ModelCard:
        """What the model is, what it was trained on, what it is for and not for, and its figures per group."""
        return ModelCard(
            name=info.name, backbone=info.backbone, input_size=info.input_size, age_mode=info.age_mode,
            race_taxonomy=info.race_taxonomy,
            labels=ModelLabels(
                gender=list(labels.GENDERS), race=list(info.race_labels), age_bins=list(labels.AGE_BIN_LABELS)
            ),
            training_data=info.training_data, licence=info.licence, intended_use=info.intended_use,
            must_not_be_used_for=list(info.must_not_be_used_for), evaluation=info.evaluation,
            card=card_json(info),
        )

    @api.get("/health")
    def health() -> Health:
        """Answers once the model is loaded, which happens before the app starts serving."""
        return Health(status="ok", model_loaded=True, model=info.name)

    app = FastAPI(
        title="facescope",
        description="Statistical estimates of apparent age, gender and race from face photos, with error "
        "rates that differ by group; not facts about a person. " + info.intended_use,
        version="1",
    )
    app.include_router(api)
    # Last, so the API routes above take precedence; serves index.html at `/`.
    app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="page")
    return app


async def _read_upload(request: Request, max_bytes: int, too_big: str) -> tuple[str, bytes]:
    """(filename, bytes) of the multipart field `file`, read into memory with the size limit enforced
    on the declared Content-Length and on the bytes actually received."""
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
        form = await parser.parse()
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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            Image.open(io.BytesIO(data)).close()
    except UnidentifiedImageError:
        return False
    except (Image.DecompressionBombError, OSError, SyntaxError, ValueError):
        return True
    return True


def _jpeg_data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# The environment variables `app_from_env` reads: uvicorn starts each worker process from an import
# string, so `facescope serve` passes its options this way.
ENV_MODEL = "FACESCOPE_MODEL"
ENV_MAX_UPLOAD_MB = "FACESCOPE_MAX_UPLOAD_MB"
ENV_MAX_FACES = "FACESCOPE_MAX_FACES"
ENV_REQUEST_TIMEOUT_S = "FACESCOPE_REQUEST_TIMEOUT_S"


def app_from_env() -> FastAPI:
    """The app configured from the FACESCOPE_* variables above; an unset one keeps `create_app`'s default."""
    env = os.environ
    options: dict[str, Any] = {"bundle": env.get(ENV_MODEL) or None}
    if ENV_MAX_UPLOAD_MB in env:
        options["max_upload_bytes"] = round(float(env[ENV_MAX_UPLOAD_MB]) * 1024 * 1024)
    if ENV_MAX_FACES in env:
        options["max_faces"] = int(env[ENV_MAX_FACES])
    if ENV_REQUEST_TIMEOUT_S in env:
        options["request_timeout_s"] = float(env[ENV_REQUEST_TIMEOUT_S])
    return create_app(**options)
