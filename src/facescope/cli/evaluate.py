"""`facescope evaluate`: figures overall and per group for a model bundle on a labelled dataset."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from facescope.data.loaders import FORMATS


class Split(str, Enum):
    test = "test"
    val = "val"
    train = "train"
    all = "all"


def evaluate_command(
    data: Annotated[Path, typer.Option(metavar="PATH", help=f"Labelled dataset ({', '.join(FORMATS)}; detected from "
                                                           "the path), e.g. a training run's splits.csv.")],
    model: Annotated[str, typer.Option(metavar="BUNDLE", help="Model bundle folder (model.onnx + model.json); "
                                            "'default' is the bundled model.")] = "default",
    split: Annotated[Split, typer.Option(help="Which split to evaluate; made as training makes it.")] = Split.test,
    seed: Annotated[int, typer.Option(help="Split seed (as in training); also seeds --limit's sample.")] = 0,
    val_fraction: Annotated[float, typer.Option(help="Validation share of the split (as in training).")] = 0.1,
    test_fraction: Annotated[float, typer.Option(help="Test share of the split (as in training).")] = 0.1,
    output: Annotated[Path | None, typer.Option(help="Report folder.", show_default="reports/<model name>")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Evaluate a seeded sample of N faces of the split.")] = None,
    min_group_size: Annotated[int, typer.Option(min=1, help="Groups smaller than this are listed (greyed) but "
                                                            "left out of gap figures.")] = 30,
    n_boot: Annotated[int, typer.Option(min=0, help="Bootstrap resamples behind the 95% intervals "
                                                    "(0: no intervals).")] = 1000,
    update_bundle: Annotated[bool, typer.Option("--update-bundle", help="Write the figures into the bundle's "
                                                                        "model.json evaluation section.")] = False,
) -> None:
    """Evaluate a model: accuracy, calibration and age error overall and by race, gender and age, with the
    gaps between groups, each with a 95% bootstrap interval; writes report.html (self-contained), report.md,
    metrics.json, predictions.csv and the figures.

    The summary goes to stdout, the report to --output. Needs the `audit` extra (scikit-learn, fairlearn; no PyTorch).

    \b
    Examples:
      facescope evaluate --data ../shared/data/utkface --split test
      facescope evaluate --model my-bundle --data runs/mine/splits.csv --limit 500
    """
    from facescope.evaluation.report import summary_lines
    from facescope.evaluation.run import run_evaluation

    result, folder = run_evaluation(
        model, data, split=Split(split).value, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction,
        output=output, limit=limit, min_group_size=min_group_size, update_bundle=update_bundle,
        n_boot=n_boot,
    )
    for line in summary_lines(result):
        typer.echo(line)
    if result.cross_taxonomy:
        note = result.cross_taxonomy
        if note.get("mapped") == "predictions":
            typer.echo(f"the model's {note['source']} races scored in the data's {note['target']} (each coarse race "
                       "the sum of its fine ones)")
        else:
            typer.echo(f"truth races mapped {note['source']} -> {note['target']}: {note['rows_dropped']} faces dropped")
    typer.echo(f"report: {folder / 'report.html'} (and report.md)")
