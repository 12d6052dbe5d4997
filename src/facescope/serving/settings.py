"""The server's settings: one pydantic-settings model, read from `FACESCOPE_*` environment variables
(`FACESCOPE_MAX_FACES=30`), which `facescope serve` sets from its flags, so every uvicorn worker process
builds the same app from the environment."""

from __future__ import annotations

import os

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from facescope.faces.detect import DETECTION_SIZE, MIN_FACE_SIZE, SCORE_THRESHOLD
from facescope.inference.predictor import MAX_FACES


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACESCOPE_", extra="ignore")

    model: str | None = Field(default=None, description="model bundle folder; unset: the bundled model")
    host: str = Field(default="127.0.0.1", description="address to listen on; 0.0.0.0 opens it to the network")
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, description="worker processes, each with its own copy of the model")
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1, description="largest photo accepted (413)")
    max_files_per_request: int = Field(default=20, ge=1, description="most photos in one request to "
                                       "/api/v1/predict/batch (413)")
    max_request_bytes: int = Field(default=50 * 1024 * 1024, ge=1, description="largest request body to "
                                   "/api/v1/predict/batch, all its photos together (413)")
    max_faces: int = Field(default=MAX_FACES, ge=1, description="most faces analysed per photo, the largest "
                           "first; a request may ask for fewer")
    detection_size: int = Field(default=DETECTION_SIZE, ge=32, le=8192)
    score_threshold: float = Field(default=SCORE_THRESHOLD, ge=0.0, le=1.0)
    min_face_size: float = Field(default=MIN_FACE_SIZE, ge=0)
    request_timeout_s: float = Field(default=30.0, gt=0, description="seconds a prediction may take, "
                                     "queueing included (504)")
    header_timeout_s: float = Field(default=10.0, gt=0, description="seconds a client has to send a "
                                    "request's headers, from connecting or from the previous answer")
    body_timeout_s: float = Field(default=30.0, gt=0, description="seconds a client has to send an upload (408)")
    keep_alive_s: int = Field(default=5, ge=1, description="seconds an idle keep-alive connection is kept")
    max_concurrent_predictions: int = Field(
        default_factory=lambda: min(4, len(os.sched_getaffinity(0))), ge=1,
        description="photos decoded and analysed at once; each takes up to a few hundred MB while decoding",
    )
    annotate_max_side: int = Field(default=2048, ge=256, le=8192, description="?annotate=true: the annotated "
                                   "photo is drawn at most this many pixels on its longer side (bounds its memory)")
    cors_origins: str = Field(default="", description="comma-separated origins allowed to call the API from "
                              "a browser; empty (the default): none but the page itself")

    @field_validator("model")
    @classmethod
    def _empty_is_the_bundled_model(cls, value: str | None) -> str | None:
        return value or None

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]
