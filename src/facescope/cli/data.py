"""`facescope data ...`: look at a dataset (stats) and make a reproducible split (split)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Dataset analysis and splits.", no_args_is_help=True)
console = Console(stderr=True)

FORMAT_HELP = "utkface | fairface | utk48csv | manifest (default: detected from the path)"


@app.command("stats")
def stats_command(
    path: Path = typer.Argument(..., help="dataset folder or CSV"),
    output: Path = typer.Option(Path("reports/data-stats"), "--output", "-o", help="folder for the report"),
    format: str | None = typer.Option(None, help=FORMAT_HELP),
    taxonomy: str | None = typer.Option(None, help="race taxonomy of a manifest without a race_taxonomy column"),
) -> None:
    """Counts, shares, cross tables and balance per race, gender and age bin; Markdown, JSON and PNGs."""
    from facescope.data import load_dataset
    from facescope.data.stats import write_stats

    dataset = load_dataset(path, format, taxonomy)
    stats = write_stats(dataset, output)
    info = stats["dataset"]
    console.print(f"[bold]{info['records']:,}[/] records ({info['format']}, {info['taxonomy']}), "
                  f"{info['skipped']} malformed entries skipped")
    for entry in stats["skipped"][:20]:
        console.print(f"  skipped [yellow]{entry['name']}[/]: {entry['reason']}")
    for name, rows in stats["counts"].items():
        table = Table(title=f"by {name.replace('_', ' ')}")
        for column in (name, "count", "share"):
            table.add_column(column, justify="left" if column == name else "right")
        for row in rows:
            table.add_row(str(row[name]), f"{row['count']:,}", f"{row['share']:.1%}")
        console.print(table)
    for grouping, balance in stats["balance"].items():
        if balance:
            console.print(f"balance by {grouping}: {balance['largest']} / {balance['smallest']} = "
                          f"{balance['largest_over_smallest']}")
    console.print(f"report: {output / 'report.md'}, {output / 'stats.json'}")


@app.command("split")
def split_command(
    path: Path = typer.Argument(..., help="dataset folder or CSV"),
    output: Path = typer.Option(Path("splits.csv"), "--output", "-o", help="manifest CSV to write"),
    val_fraction: float = typer.Option(0.1, help="share for validation"),
    test_fraction: float = typer.Option(0.1, help="share for test"),
    seed: int = typer.Option(0, help="same seed, same split"),
    format: str | None = typer.Option(None, help=FORMAT_HELP),
) -> None:
    """A train/val/test split stratified by race x gender, written as a manifest (`partition` column)."""
    from facescope.data import load_dataset
    from facescope.data.splits import assign_splits, write_split_manifest

    dataset = load_dataset(path, format)
    splits = assign_splits(dataset.records, val_fraction, test_fraction, seed)
    write_split_manifest(dataset.records, splits, output)
    counts = {name: splits.count(name) for name in ("train", "val", "test")}
    console.print(f"wrote {output}: {counts}")
