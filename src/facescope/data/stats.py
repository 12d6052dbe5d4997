"""`facescope data stats`: how a dataset is balanced, from its labels alone (no image is decoded).

Writes into an output folder: stats.json, report.md, and PNG charts (age histogram, bars per race,
gender and age bin, race x gender and race x age-bin heatmaps).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from facescope import labels
from facescope.data.records import LoadedDataset


def _counts(series: pd.Series, order: tuple[str, ...]) -> pd.DataFrame:
    counts = series.value_counts().reindex([o for o in order if o in set(series)] or order, fill_value=0)
    extra = series.value_counts().drop(counts.index, errors="ignore")
    counts = pd.concat([counts, extra])
    return pd.DataFrame({"count": counts, "share": (counts / max(1, counts.sum())).round(4)})


def _balance(counts: pd.Series) -> dict:
    present = counts[counts > 0]
    return {
        "largest": str(present.idxmax()), "smallest": str(present.idxmin()),
        "largest_over_smallest": round(float(present.max() / present.min()), 2),
    } if len(present) else {}


def dataset_stats(dataset: LoadedDataset) -> dict:
    """Counts and shares per race, gender and age bin, the cross tables, balance and age summary."""
    frame = dataset.to_frame()
    races = labels.taxonomy(dataset.taxonomy).labels
    tables = {
        "race": _counts(frame["race"].dropna(), races),
        "gender": _counts(frame["gender"].dropna(), labels.GENDERS),
        "age_bin": _counts(frame["age_bin"].dropna(), labels.AGE_BIN_LABELS),
    }
    race_gender = pd.crosstab(frame["race"], frame["gender"]).reindex(index=[r for r in races if r in set(frame["race"])])
    race_age = pd.crosstab(frame["race"], frame["age_bin"]).reindex(
        index=[r for r in races if r in set(frame["race"])],
        columns=[b for b in labels.AGE_BIN_LABELS if b in set(frame["age_bin"])],
    )
    ages = frame["age_years"].dropna()
    return {
        "dataset": {"format": dataset.format, "root": str(dataset.root), "taxonomy": dataset.taxonomy,
                    "records": len(dataset.records), "skipped": len(dataset.skipped)},
        "skipped": [{"name": s.name, "reason": s.reason} for s in dataset.skipped],
        "counts": {name: table.reset_index(names=name).to_dict("records") for name, table in tables.items()},
        "race_x_gender": race_gender.to_dict("index"),
        "race_x_age_bin": race_age.to_dict("index"),
        "balance": {
            "race": _balance(tables["race"]["count"]),
            "gender": _balance(tables["gender"]["count"]),
            "age_bin": _balance(tables["age_bin"]["count"]),
            "race_x_gender": _balance(race_gender.stack()) if race_gender.size else {},
        },
        "age_years": {} if ages.empty else {
            "min": float(ages.min()), "median": float(ages.median()), "mean": round(float(ages.mean()), 2),
            "max": float(ages.max()),
        },
    }


def _markdown_table(table: pd.DataFrame) -> str:
    header = "| | " + " | ".join(map(str, table.columns)) + " |"
    rule = "|---|" + "---:|" * len(table.columns)
    rows = ["| " + str(index) + " | " + " | ".join(f"{v:,}" for v in row) + " |" for index, row in table.iterrows()]
    return "\n".join([header, rule, *rows])


def _markdown(stats: dict) -> str:
    info = stats["dataset"]
    lines = [
        f"# Dataset statistics: {info['root']}", "",
        f"Format **{info['format']}**, race taxonomy **{info['taxonomy']}**: {info['records']:,} records read, "
        f"{info['skipped']} malformed entries skipped.", "",
    ]
    if stats["skipped"]:
        lines += ["## Skipped entries", "", "| entry | reason |", "|---|---|"]
        lines += [f"| `{s['name']}` | {s['reason']} |" for s in stats["skipped"][:200]]
        lines.append("")
    for name, rows in stats["counts"].items():
        lines += [f"## By {name.replace('_', ' ')}", "", f"| {name} | count | share |", "|---|---:|---:|"]
        lines += [f"| {r[name]} | {r['count']:,} | {r['share']:.1%} |" for r in rows]
        lines.append("")
    for key, title in (("race_x_gender", "Race x gender"), ("race_x_age_bin", "Race x age bin")):
        table = pd.DataFrame.from_dict(stats[key], orient="index")
        if not table.empty:
            lines += [f"## {title}", "", _markdown_table(table), ""]
    lines += ["## Balance (largest group over smallest)", "", "| grouping | largest | smallest | ratio |",
              "|---|---|---|---:|"]
    lines += [f"| {k} | {v['largest']} | {v['smallest']} | {v['largest_over_smallest']} |"
              for k, v in stats["balance"].items() if v]
    if stats["age_years"]:
        a = stats["age_years"]
        lines += ["", f"Age in years: min {a['min']:g}, median {a['median']:g}, mean {a['mean']:g}, max {a['max']:g}."]
    lines += ["", "Charts: age_histogram.png, race.png, gender.png, age_bin.png, race_x_gender.png, race_x_age_bin.png"]
    return "\n".join(lines) + "\n"


def _plots(dataset: LoadedDataset, stats: dict, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = dataset.to_frame()
    if frame["age_years"].notna().any():
        figure, axis = plt.subplots(figsize=(7, 3.5))
        axis.hist(frame["age_years"].dropna(), bins=range(0, int(frame["age_years"].max()) + 2), color="#4c72b0")
        axis.set(title="Age (years)", xlabel="age", ylabel="images")
        figure.tight_layout()
        figure.savefig(folder / "age_histogram.png", dpi=100)
        plt.close(figure)
    for name, rows in stats["counts"].items():
        figure, axis = plt.subplots(figsize=(7, 3.5))
        axis.bar([str(r[name]) for r in rows], [r["count"] for r in rows], color="#4c72b0")
        axis.set(title=f"Images by {name.replace('_', ' ')}", ylabel="images")
        axis.tick_params(axis="x", rotation=30)
        figure.tight_layout()
        figure.savefig(folder / f"{name}.png", dpi=100)
        plt.close(figure)
    for key in ("race_x_gender", "race_x_age_bin"):
        table = pd.DataFrame.from_dict(stats[key], orient="index")
        if table.empty:
            continue
        figure, axis = plt.subplots(figsize=(1.2 + 0.9 * table.shape[1], 1 + 0.5 * table.shape[0]))
        image = axis.imshow(table.values, cmap="Blues")
        axis.set_xticks(range(table.shape[1]), table.columns, rotation=30)
        axis.set_yticks(range(table.shape[0]), table.index)
        for (i, j), value in pd.DataFrame(table.values).stack().items():
            axis.text(j, i, f"{value:,}", ha="center", va="center", fontsize=8)
        figure.colorbar(image, ax=axis)
        axis.set_title(key.replace("_x_", " x ").replace("_", " "))
        figure.tight_layout()
        figure.savefig(folder / f"{key}.png", dpi=100)
        plt.close(figure)


def write_stats(dataset: LoadedDataset, folder: Path) -> dict:
    """Compute the statistics and write stats.json, report.md and the charts into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stats = dataset_stats(dataset)
    (folder / "stats.json").write_text(json.dumps(stats, indent=2))
    (folder / "report.md").write_text(_markdown(stats))
    _plots(dataset, stats, folder)
    return stats
