"""`facescope audit`: the fairness report of any estimator, from its predictions and a data set's labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facescope.cli.evaluate import Split


def audit_command(
    predictions: Annotated[list[Path], typer.Option(
        "--predictions", "-p", help="A tool's predictions: a CSV or JSON(L) table with a path column and any of "
                                    "gender, race, age in years, age group (with or without p_<head>_<label> "
                                    "probabilities); or as tools write them: facescope predict's JSONL, JSON or "
                                    "CSV, DeepFace analyze results, insightface faces (gender 1 = male). "
                                    "Repeat to compare tools on the same photos.")],
    data: Annotated[Path, typer.Option(help="The ground truth: any data set facescope reads (a UTKFace or "
                                            "FairFace folder, a label CSV, a split manifest).")],
    name: Annotated[list[str] | None, typer.Option(help="A name per predictions file, in order "
                                                        "(default: the file name).")] = None,
    columns: Annotated[list[Path] | None, typer.Option(
        help="Column YAML (keys: path, gender, race, age_years, age_bin, face_found, race_taxonomy, "
             "probabilities): one for every file, or one per file in order.")] = None,
    path_column: Annotated[str | None, typer.Option(help="Column holding each photo's path.")] = None,
    gender_column: Annotated[str | None, typer.Option(help="Column holding the predicted gender.")] = None,
    race_column: Annotated[str | None, typer.Option(help="Column holding the predicted race.")] = None,
    age_column: Annotated[str | None, typer.Option(help="Column holding the predicted age in years.")] = None,
    age_bin_column: Annotated[str | None, typer.Option(help="Column holding the predicted age group.")] = None,
    race_taxonomy: Annotated[str | None, typer.Option(
        help="The tool's race labels: utkface5, fairface7, fairface4 or deepface6 (default: guessed).")] = None,
    split: Annotated[Split, typer.Option(help="Audit the photos of this split of the data set (as training "
                                              "makes it).")] = Split.all,
    seed: Annotated[int, typer.Option(help="Split seed (as in training); also seeds the bootstrap.")] = 0,
    val_fraction: Annotated[float, typer.Option(help="Validation share of the split (as in training).")] = 0.1,
    test_fraction: Annotated[float, typer.Option(help="Test share of the split (as in training).")] = 0.1,
    model: Annotated[str | None, typer.Option(
        metavar="BUNDLE", help="The facescope model behind predictions that name one (default: the installed "
                               "model of that name); the photos it trained on are left out.")] = None,
    training_splits: Annotated[Path | None, typer.Option(
        help="The training run's split manifest (splits.csv): its train and val photos are left out of an "
             "audit of that model's predictions.")] = None,
    min_group_size: Annotated[int, typer.Option(min=1, help="Groups smaller than this are greyed and left out "
                                                            "of gap figures.")] = 30,
    n_boot: Annotated[int, typer.Option(min=0, help="Bootstrap resamples behind the 95% intervals.")] = 1000,
    output: Annotated[Path, typer.Option(help="Report folder.")] = Path("reports/audit"),
) -> None:
    """Audit any estimator the way Gender Shades did: its predictions joined to a data set's labels
    (unmatched rows reported), labels mapped onto facescope's schema, figures per group with 95% intervals,
    faces missed per group, and several tools side by side; writes report.html and report.md.

    \b
    Examples:
      facescope audit -p deepface.csv --data ../shared/data/utkface --race-taxonomy deepface6
      facescope audit -p ours.jsonl -p theirs.csv --name facescope --name theirs --data runs/mine/splits.csv
    """
    from facescope.evaluation.audit import ColumnMap, audit
    from facescope.evaluation.report import summary_lines

    names = list(name or [])
    if names and len(names) != len(predictions):
        raise ValueError(f"{len(names)} --name for {len(predictions)} --predictions: give one per file or none")
    yamls = list(columns or [])
    if len(yamls) not in (0, 1, len(predictions)):
        raise ValueError(f"{len(yamls)} --columns for {len(predictions)} --predictions: give none, one, or one per file")
    options = {"path": path_column, "gender": gender_column, "race": race_column, "age_years": age_column,
               "age_bin": age_bin_column, "race_taxonomy": race_taxonomy}
    files = []
    for i, path in enumerate(predictions):
        mapping = ColumnMap.from_yaml(yamls[min(i, len(yamls) - 1)]) if yamls else ColumnMap()
        for key, value in options.items():
            if value is not None:
                setattr(mapping, key, value)
        files.append((names[i] if names else path.stem, path, mapping))
    runs, context, folder = audit(files, data, split=Split(split).value, seed=seed, val_fraction=val_fraction,
                                  test_fraction=test_fraction, min_group_size=min_group_size, n_boot=n_boot,
                                  output=output, model=model, training_splits=training_splits)
    for warning in context["warnings"]:
        typer.secho(f"WARNING: {warning}", err=True, fg=typer.colors.RED, bold=True)
    for note in context["joins"]:
        typer.echo(f"{note['estimator']}: {note['matched']:,} of {note['prediction_rows']:,} rows matched the ground "
                   f"truth; {note['unmatched_rows']:,} unmatched"
                   + (f" (e.g. {', '.join(note['unmatched_examples'][:3])})" if note["unmatched_rows"] else ""))
        if note["skipped"]:
            typer.echo(f"{note['estimator']}: skipped " + ", ".join(f"{count:,} ({why})" for why, count in
                                                                   note["skipped"].items()))
    for run in runs:
        typer.echo(f"[{run.name}]")
        for line in summary_lines(run.result):
            typer.echo(f"  {line}")
    typer.echo(f"report: {folder / 'report.html'} (and report.md)")
