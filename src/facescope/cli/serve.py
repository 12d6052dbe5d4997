"""`facescope serve`: the web page and REST API (facescope.serving.app) under uvicorn.

Every flag is a setting of facescope.serving.settings.Settings and can be given as a FACESCOPE_* variable
instead (`FACESCOPE_MAX_FACES=30`); a flag wins over the variable.
"""

from __future__ import annotations

import os

import typer

from facescope.cli.options import with_detection_options

BANNER = "!" * 78


@with_detection_options(environment="FACESCOPE_")
def serve_command(
    host: str | None = typer.Option(None, help="address to listen on (default 127.0.0.1); 0.0.0.0 opens "
                                    "the service to the network [FACESCOPE_HOST]"),
    port: int | None = typer.Option(None, help="TCP port (default 8000) [FACESCOPE_PORT]"),
    model: str | None = typer.Option(None, metavar="MODEL", help="installed model name or bundle folder (with model.onnx and model.json); "
                                                "default: the bundled model [FACESCOPE_MODEL]"),
    workers: int | None = typer.Option(None, min=1, help="worker processes, each with its own copy of the "
                                       "model (default 1) [FACESCOPE_WORKERS]"),
    max_upload_mb: float | None = typer.Option(None, min=0.001, help="largest photo accepted, in MB (default "
                                               "10; larger: 413) [FACESCOPE_MAX_UPLOAD_BYTES, in bytes]"),
    detection: dict | None = None,  # the detection options' flags (facescope.cli.options)
    timeout: float | None = typer.Option(None, help="seconds a prediction may take, queueing included "
                                         "(default 30; longer: 504) [FACESCOPE_REQUEST_TIMEOUT_S]"),
    header_timeout: float | None = typer.Option(None, help="seconds a client has to send a request's "
                                                "headers (default 10) [FACESCOPE_HEADER_TIMEOUT_S]"),
    body_timeout: float | None = typer.Option(None, help="seconds a client has to send its upload "
                                              "(default 30; longer: 408) [FACESCOPE_BODY_TIMEOUT_S]"),
    cors_origins: str | None = typer.Option(None, help="comma-separated origins whose pages may call the API "
                                            "(default none) [FACESCOPE_CORS_ORIGINS]"),
) -> None:
    """Serve the web page at / and the REST API under /api/v1 (its docs at /docs).

    Photos sent to it stay in memory: never written to disk, never logged. The model's facts go to
    stdout at start-up, uvicorn's log to stderr.

    \b
    Examples:
      facescope serve                                  then open http://127.0.0.1:8000
      facescope serve --host 0.0.0.0 --port 8080 --workers 2
      curl -F file=@group.jpg http://127.0.0.1:8000/api/v1/predict
    """
    import uvicorn

    from facescope.bundles import load_bundle, resolve_bundle
    from facescope.serving.security import is_loopback
    from facescope.serving.settings import Settings

    flags = {
        "host": host, "port": port, "model": model, "workers": workers,
        "max_upload_bytes": None if max_upload_mb is None else round(max_upload_mb * 1024 * 1024), **detection,
        "request_timeout_s": timeout, "header_timeout_s": header_timeout, "body_timeout_s": body_timeout,
        "cors_origins": cors_origins,
    }
    # The one way the app gets its settings: uvicorn builds it in each worker from the factory, which
    # reads them from the environment (a worker process cannot be handed Python objects).
    os.environ.update({f"FACESCOPE_{name.upper()}": str(value) for name, value in flags.items() if value is not None})
    settings = Settings()  # checks every value, from flags and variables alike, before anything starts
    # A wrong --model or a bundle whose JSON and graph disagree fails here, in one line, before any worker starts.
    info = load_bundle(resolve_bundle(settings.model)).info
    typer.echo(f"model {info.name} ({info.backbone}, race labels: {', '.join(info.race_labels)})")
    typer.echo(f"intended use: {info.intended_use}")
    typer.echo("must not be used for:\n" + "\n".join(f"  - {item}" for item in info.must_not_be_used_for))
    typer.echo(f"licence: {info.licence}")
    if not is_loopback(settings.host):
        typer.echo(
            f"{BANNER}\nWARNING: listening on {settings.host}: anyone who can reach this machine on port "
            f"{settings.port} can upload photos and read estimates of age, gender and race. There is no "
            "login and no TLS here: put an authenticating HTTPS proxy in front, or use --host 127.0.0.1."
            f"\n{BANNER}", err=True,
        )
    uvicorn.run("facescope.serving.app:app_from_env", factory=True, host=settings.host, port=settings.port,
                workers=settings.workers, timeout_keep_alive=settings.keep_alive_s,
                http="facescope.serving.security:HeaderTimeoutH11Protocol")
