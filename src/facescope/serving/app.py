"""The web app and REST API: `create_app()` builds it, `facescope serve` runs it with uvicorn.

    POST /api/v1/predict   one photo (multipart field `file`, or JSON {"img": base64}) -> the ImageResult
                           `facescope predict` prints
    POST /api/v1/predict/batch  several photos (multipart parts `files`) -> one ImageResult per photo
    GET  /api/v1/model     the model card: labels, training data, intended use, figures per group
    GET  /api/v1/health    liveness and readiness (the model is loaded)
    GET  /docs             the OpenAPI page (Swagger UI from local files); the schema at /openapi.json
    GET  /                 the web page (static files; nothing is loaded from the internet)

Uploaded photos stay in memory: they are never written to disk and never logged. The routes live in
facescope.serving.routers, the settings in facescope.serving.settings, the network-facing defences in
facescope.serving.security.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from facescope.inference.predictor import Predictor
from facescope.serving.routers import DOCS_ASSETS, MULTIPART_OVERHEAD, PredictionResult, ServerState, api, docs
from facescope.serving.security import SecurityMiddleware, return_freed_memory_promptly
from facescope.serving.settings import Settings

__all__ = ["MULTIPART_OVERHEAD", "PredictionResult", "Settings", "app_from_env", "create_app"]

STATIC_DIR = Path(__file__).resolve().parent / "static"


def load_predictor(settings: Settings) -> Predictor:
    # One ONNX thread per prediction, and as many predictions at once as the settings allow: concurrent
    # requests then use the machine without oversubscribing it.
    predictor = Predictor(settings.model, threads=1, max_faces=settings.max_faces,
                          detection_size=settings.detection_size, score_threshold=settings.score_threshold,
                          min_face_size=settings.min_face_size)
    predictor.detector  # made now, not on the first request
    return predictor


@asynccontextmanager
async def lifespan(app: FastAPI):
    state: ServerState = app.state.facescope
    return_freed_memory_promptly()
    if state.predictor is None:
        # Before the first request is accepted: a bad bundle stops the server from starting at all.
        state.predictor = await anyio.to_thread.run_sync(load_predictor, state.settings)
    yield


def create_app(predictor: Predictor | None = None, settings: Settings | None = None, **overrides) -> FastAPI:
    """The app around one predictor: the one given, or one the app loads as it starts (from
    `settings.model`). `settings` default to the FACESCOPE_* environment; `overrides` replace single
    settings (`create_app(max_faces=5)`)."""
    settings = Settings(**{**(settings or Settings()).model_dump(), **overrides})
    if predictor is not None:
        predictor.detector  # made now, not on the first request
    app = FastAPI(
        title="facescope",
        description="Statistical estimates of apparent age, gender and race from face photos, with error "
        "rates that differ by group; not facts about a person.",
        version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
    )
    app.state.facescope = ServerState(settings, predictor)
    app.include_router(api)
    app.include_router(docs)
    import swagger_ui_bundle

    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")
    # Last, so the routes above take precedence; serves index.html at `/`.
    app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="page")
    if settings.cors_origin_list:  # closed unless configured: only the page itself calls the API
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origin_list, allow_methods=["GET", "POST"])
    app.add_middleware(SecurityMiddleware)
    return app


def app_from_env() -> FastAPI:
    """The app configured from the FACESCOPE_* variables (how uvicorn builds it in each worker process)."""
    return create_app()
