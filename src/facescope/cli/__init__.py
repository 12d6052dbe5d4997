"""The `facescope` command: one verb per job (data, train, export, evaluate, audit, predict, serve).

Each verb lives in its own module here; heavy libraries (PyTorch, FastAPI) are imported inside the
command that needs them, so `facescope predict` starts fast and needs no PyTorch.
"""

from __future__ import annotations

import logging

import typer

from facescope.cli import audit, data, evaluate, predict, serve, train

NOTICE = (
    "facescope gives statistical estimates of apparent age, gender and race, with error rates that "
    "differ by group; they are not facts about a person. Not for identity decisions or surveillance."
)

app = typer.Typer(
    help=f"Age, gender and race estimation from face photos, with fairness audits.\n\n{NOTICE}",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
app.add_typer(data.app, name="data")
app.command("train")(train.train_command)
app.command("export")(train.export_command)
app.command("evaluate")(evaluate.evaluate_command)
app.command("audit")(audit.audit_command)
app.command("predict")(predict.predict_command)
app.command("serve")(serve.serve_command)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except (ValueError, FileNotFoundError) as error:
        # A wrong path, an unknown dataset layout, a bad option value: the message is the whole story.
        typer.echo(f"error: {error}", err=True)
        raise SystemExit(2) from None
