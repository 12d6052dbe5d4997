"""`facescope data ...`: look at a dataset (stats) and make a reproducible split (split)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from facescope.cli import HELP_STYLE
from facescope.data.loaders import FORMATS

app = typer.Typer(
    help="Look at a dataset's balance (stats); make a reproducible train/val/test split (split).",
    epilog="\b\nExamples:\n"
           "  facescope data stats ../shared/data/utkface -o reports/utkface-stats\n"
           "  facescope data split ../shared/data/utkface -o splits.csv --seed 0",
    no_args_is_help=True, **HELP_STYLE,
)
console = Console(stderr=True)

FORMAT_HELP = f"{' | '.join(FORMATS)} (default: detected from the path)"


@app.command("stats", short_help="Counts and balance per race, gender and age bin, as a report.")
def stats_command(
    path: Path = typer.Argument(..., metavar="PATH", help="dataset folder or CSV"),
    output: Path = typer.Option(Path("reports/data-stats"), "--output", "-o", help="folder for the report"),
    format: str | None = typer.Option(None, help=FORMAT_HELP),
    taxonomy: str | None = typer.Option(None, help="race taxonomy of a manifest without a race_taxonomy column"),
) -> None:
    """Counts, shares, cross tables and balance per race, gender and age bin; Markdown, JSON and PNGs.

    Labels come from file names and label files: no image is decoded. The summary goes to stderr, the
    report (report.md, stats.json, charts) to the --output folder.

    \b
    Example:
      facescope data stats ../shared/data/utkface -o reports/utkface-stats
    """
    from facescope.data import load_dataset
    from facescope.data.stats import absent_note, write_stats

    dataset = load_dataset(path, format, taxonomy)
    stats = write_stats(dataset, output)
    info = stats["dataset"]
    # The skipped entries are named once, by the loader's warning, and all of them in the report.
    console.print(f"[bold]{info['records']:,}[/] records ({info['format']}, "
                  f"{info['taxonomy'] or 'no race labels'}), {info['skipped']} malformed entries skipped")
    if stats["absent"]:
        console.print(absent_note(stats))
    for name, rows in stats["counts"].items():
        table = Table(title=f"by {name.replace('_', ' ')}")
        for column in (name, "count", "share"):
            table.add_column(column, justify="left" if column == name else "right")
        for row in rows:
            table.add_row(str(row[name]), f"{row['count']:,}", f"{row['share']:.1%}")
        console.print(table)
    for grouping, balance in stats["balance"].items():
        if balance:
            console.print(f"balance by {grouping.replace('_x_', ' x ').replace('_', ' ')}: largest {balance['largest']}, "
                          f"smallest {balance['smallest']}, ratio {balance['largest_over_smallest']}")
    console.print(f"report: {output / 'report.html'} (and report.md), {output / 'stats.json'}")


@app.command("split", short_help="A reproducible train/val/test split, stratified by race x gender.")
def split_command(
    path: Path = typer.Argument(..., metavar="PATH", help="dataset folder or CSV"),
    output: Path = typer.Option(Path("splits.csv"), "--output", "-o", help="manifest CSV to write"),
    val_fraction: float = typer.Option(0.1, help="share for validation"),
    test_fraction: float = typer.Option(0.1, help="share for test"),
    seed: int = typer.Option(0, help="same seed, same split"),
    format: str | None = typer.Option(None, help=FORMAT_HELP),
) -> None:
    """A train/val/test split stratified by race x gender, written as a manifest (`partition` column).

    The same seed and fractions give the same split; `facescope train --splits` and
    `facescope evaluate --data` read the manifest.

    \b
    Example:
      facescope data split ../shared/data/utkface -o splits.csv --seed 0
    """
    from facescope.data import load_dataset
    from facescope.data.splits import assign_splits, write_split_manifest

    dataset = load_dataset(path, format)
    splits = assign_splits(dataset.records, val_fraction, test_fraction, seed)
    write_split_manifest(dataset.records, splits, output)
    counts = {name: splits.count(name) for name in ("train", "val", "test")}
    console.print(f"wrote {output}: {counts}")


@app.command("to-48x48")
def to_48x48_command(
    path: Path = typer.Argument(..., help="dataset folder or CSV with UTKFace labels (or a split manifest)"),
    output: Path = typer.Option(Path("utk48.csv"), "--output", "-o", help="CSV to write"),
    split: str = typer.Option("all", help="train | val | test | all: a split manifest's partition"),
) -> None:
    """The UTK 48x48 grey CSV (age,ethnicity,gender,img_name,pixels) of a data set's faces, aligned by the
    face pipeline: the format of the small-CNN seed project, for its baseline."""
    from facescope.data import load_dataset
    from facescope.faces.crops import write_utk48_csv

    records = load_dataset(path).records
    if split != "all":
        records = [r for r in records if r.partition == split]
    written, missed = write_utk48_csv(records, output)  # a ValueError, said in one line, when none can be
    console.print(f"wrote {output}: {written} faces ({missed} not found)")
