"""The `facescope` command: one verb per job, listed by how often people use them.

Each verb lives in its own module here and is imported only when that verb runs (or shows its help),
so `facescope --help` loads none of onnxruntime, OpenCV, pandas or PyTorch, and each verb pays only
for the libraries it needs. A new verb is one entry in VERBS, at the place it should be listed.
"""

from __future__ import annotations

import importlib
import logging
import sys
from difflib import get_close_matches
from typing import Annotated, NamedTuple

import typer
import typer.main
from typer.core import TyperGroup
from typer.exceptions import TyperException

from facescope import __version__

NOTICE = (
    "facescope gives statistical estimates of apparent age, gender and race, with error rates that "
    "differ by group; they are not facts about a person. Not for identity decisions or surveillance."
)

# Typer's Rich help shows a type beside every option, switches included (`--aligned <bool>`,
# `--help <bool>`, as of Typer 0.29); click's plain help shows switches as switches and keeps the
# `\b` example blocks as written.
HELP_STYLE = {"rich_markup_mode": None}
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}


class Verb(NamedTuple):
    target: str  # "module:attribute": a command function or a typer.Typer of sub-verbs
    summary: str  # its line in `facescope --help`, shown without importing the module


# In the order `facescope --help` lists them: the most used first (issue 16's order: predict, serve,
# evaluate, audit, data, train, export, models).
VERBS: dict[str, Verb] = {
    "predict": Verb("facescope.cli.predict:predict_command",
                    "Estimate age, gender and race for every face in photos (JSON lines on stdout)."),
    "serve": Verb("facescope.cli.serve:serve_command", "Serve the web page and the REST API."),
    "evaluate": Verb("facescope.cli.evaluate:evaluate_command",
                     "Figures overall and per group for a model on a labelled dataset."),
    "audit": Verb("facescope.cli.audit:audit_command",
                  "Audit any tool's predictions per group against a labelled dataset, side by side."),
    "data": Verb("facescope.cli.data:app", "Look at a dataset's balance; make a reproducible split."),
    "train": Verb("facescope.cli.train:train_command",
                  "Train the multi-task network and export a model bundle (needs PyTorch)."),
    "export": Verb("facescope.cli.train:export_command",
                   "Export a training checkpoint as a model bundle (needs PyTorch)."),
    "models": Verb("facescope.cli.models:models_command",
                   "List the installed models: labels, training data, licence, figures."),
}


# The extra that brings each optional library (pyproject.toml's optional-dependencies). The base install
# predicts and serves; a verb that reaches for a library its install lacks says which extra to add.
EXTRA_OF_LIBRARY = {
    "sklearn": "audit", "fairlearn": "audit",
    "torch": "train", "torchvision": "train", "safetensors": "train", "onnx": "train", "onnxscript": "train",
    "ray": "ray", "pyarrow": "ray",
}


def missing_library(error: ModuleNotFoundError, verb: str | None) -> int:
    """Says in one line which extra brings the library `error` names; the exit status. A missing module of
    facescope's own is a bug, raised as it is."""
    library = (error.name or "").partition(".")[0]
    if not library or library == "facescope":
        raise error
    extra = EXTRA_OF_LIBRARY.get(library)
    install = f"pip install 'facescope[{extra}]'" if extra else "pip install --force-reinstall facescope"
    what = f"`facescope {verb}`" if verb else "this"
    typer.echo(f"error: {what} needs {library}, which is not installed here: {install}", err=True)
    return 2


def load_verb(name: str) -> typer.core.TyperCommand | TyperGroup:
    """The click command behind VERBS[name], its module imported now."""
    module_name, _, attribute = VERBS[name].target.partition(":")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except ModuleNotFoundError as error:
        raise typer.Exit(missing_library(error, name)) from None
    if isinstance(target, typer.Typer):
        return typer.main.get_group(target)
    single = typer.Typer(add_completion=False, context_settings=CONTEXT_SETTINGS, **HELP_STYLE)
    single.command(name)(target)
    return typer.main.get_command(single)


class VerbGroup(TyperGroup):
    """The top-level group: the verbs in VERBS, each loaded on first use, then any added directly."""

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return [*VERBS, *(name for name in self.commands if name not in VERBS)]

    def get_command(self, ctx: typer.Context, cmd_name: str):
        if cmd_name in VERBS and cmd_name not in self.commands:
            self.commands[cmd_name] = load_verb(cmd_name)
        return super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx: typer.Context, args: list[str]):
        try:
            return super().resolve_command(ctx, args)
        except TyperException as error:  # click's UsageError, as Typer vendors it
            # Typer suggests close names only among the verbs loaded so far; these are all of them.
            close = get_close_matches(args[0], self.list_commands(ctx)) if args else []
            if close and "Did you mean" not in error.message:
                error.message = f"{error.message.rstrip('.')}. Did you mean {', '.join(map(repr, close))}?"
            raise

    def format_commands(self, ctx: typer.Context, formatter) -> None:
        rows = [(name, VERBS[name].summary if name in VERBS else self.commands[name].get_short_help_str())
                for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


app = typer.Typer(
    cls=VerbGroup,
    help=f"Age, gender and race estimates for every face in a photo, with fairness audits.\n\n{NOTICE}",
    epilog="\b\nExamples:\n"
           "  facescope predict group.jpg                  one JSON line per photo\n"
           "  facescope predict photos/ -r --format csv    every photo in a folder tree, as CSV\n"
           "  facescope serve                              the web page at http://127.0.0.1:8000\n"
           "  facescope predict -h                         a verb's options and examples",
    no_args_is_help=True, pretty_exceptions_enable=False, context_settings=CONTEXT_SETTINGS, **HELP_STYLE,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"facescope {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", "-V", callback=_show_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """Options of `facescope` itself (the help shown is the app's)."""


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        app(prog_name="facescope")  # also under `python -m facescope`, so completion scripts name the command
    except ModuleNotFoundError as error:
        # A verb imports its heavy libraries when it runs; one from an extra not installed ends here.
        verb = next((arg for arg in sys.argv[1:] if arg in VERBS), None)
        raise SystemExit(missing_library(error, verb)) from None
    except (ValueError, FileNotFoundError) as error:
        # A wrong path, an unknown dataset layout, a bad option value: the message is the whole story.
        typer.echo(f"error: {error}", err=True)
        raise SystemExit(2) from None
