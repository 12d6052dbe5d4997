"""`facescope serve`: the web page and REST API (facescope.serving.app) under uvicorn."""

from __future__ import annotations

import os

import typer


def serve_command(
    host: str = typer.Option("127.0.0.1", help="address to listen on; 0.0.0.0 opens the service to the network"),
    port: int = typer.Option(8000, help="TCP port"),
    model: str | None = typer.Option(None, metavar="BUNDLE", help="model bundle folder (with model.onnx and model.json); "
                                                "default: the bundled model"),
    workers: int = typer.Option(1, min=1, help="worker processes, each with its own copy of the model; one "
                                                 "already runs a prediction per CPU core at a time"),
    max_upload_mb: float = typer.Option(10.0, help="largest photo accepted, in MB (larger: 413)"),
    max_faces: int = typer.Option(20, min=1, help="most faces analysed per photo (the largest first)"),
    timeout: float = typer.Option(30.0, help="seconds a prediction may take, queueing included (longer: 504)"),
) -> None:
    """Serve the web page at / and the REST API under /api/v1 (its OpenAPI schema at /openapi.json).

    Photos sent to it stay in memory: never written to disk, never logged. The model's facts go to
    stdout at start-up, uvicorn's log to stderr.

    \b
    Examples:
      facescope serve                                  then open http://127.0.0.1:8000
      facescope serve --host 0.0.0.0 --port 8080 --workers 2
      curl -F file=@group.jpg http://127.0.0.1:8000/api/v1/predict
    """
    import uvicorn

    from facescope.bundles import read_bundle_info
    from facescope.serving import app as serving

    info = read_bundle_info(model)  # a wrong --model fails here, before any worker starts
    typer.echo(f"model {info.name} ({info.backbone}, race labels: {', '.join(info.race_labels)})")
    typer.echo(f"intended use: {info.intended_use}")
    typer.echo("must not be used for:\n" + "\n".join(f"  - {item}" for item in info.must_not_be_used_for))
    typer.echo(f"licence: {info.licence}")
    # The one way the app gets its settings: uvicorn builds it in each worker from the factory, which
    # reads them from the environment (a worker process cannot be handed Python objects).
    os.environ.update({
        serving.ENV_MODEL: model or "",  # empty: the bundled model
        serving.ENV_MAX_UPLOAD_MB: str(max_upload_mb),
        serving.ENV_MAX_FACES: str(max_faces),
        serving.ENV_REQUEST_TIMEOUT_S: str(timeout),
    })
    uvicorn.run("facescope.serving.app:app_from_env", factory=True, host=host, port=port, workers=workers)
