"""`facescope data stats`: how a dataset is balanced, from its labels alone (no image is decoded).

Writes into an output folder: stats.json, report.md and report.html (the same content; the HTML is one
self-contained file), and PNG charts: age histogram, bars per race, gender and age group with their
counts, race x gender and race x age-group heat maps (counts, and the age mix within each race), cells
under SMALL_CELL faces marked.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle

from facescope import labels
from facescope.data.records import LoadedDataset
from facescope.document import Document, Image, Section, Table


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


def _named_cells(table: pd.DataFrame) -> pd.Series:
    """A cross table's cells as one series named "White / Male" (never a raw tuple)."""
    cells = table.stack()
    cells.index = [" / ".join(map(str, cell)) for cell in cells.index]
    return cells


def dataset_stats(dataset: LoadedDataset) -> dict:
    """Counts and shares per race, gender and age bin, the cross tables, balance and age summary. A label
    no record has (LFW has no race or age, All-Age-Faces no race) is listed under "absent", not counted."""
    frame = dataset.to_frame()
    races = labels.taxonomy(dataset.taxonomy).labels
    orders = {"race": races, "gender": labels.GENDERS, "age_bin": labels.AGE_BIN_LABELS}
    absent = [name for name in orders if frame[name].isna().all()]
    tables = {name: _counts(frame[name].dropna(), order) for name, order in orders.items() if name not in absent}
    race_gender = pd.crosstab(frame["race"], frame["gender"]).reindex(index=[r for r in races if r in set(frame["race"])])
    race_age = pd.crosstab(frame["race"], frame["age_bin"]).reindex(
        index=[r for r in races if r in set(frame["race"])],
        columns=[b for b in labels.AGE_BIN_LABELS if b in set(frame["age_bin"])],
    )
    ages = frame["age_years"].dropna()
    return {
        "dataset": {"format": dataset.format, "root": str(dataset.root),
                    "taxonomy": None if "race" in absent else dataset.taxonomy,
                    "records": len(dataset.records), "skipped": len(dataset.skipped)},
        "absent": absent,
        "skipped": [{"name": s.name, "reason": s.reason} for s in dataset.skipped],
        "counts": {name: table.reset_index(names=name).to_dict("records") for name, table in tables.items()},
        "race_x_gender": race_gender.to_dict("index"),
        "race_x_age_bin": race_age.to_dict("index"),
        "balance": {
            **{name: _balance(table["count"]) for name, table in tables.items()},
            "race_x_gender": _balance(_named_cells(race_gender)) if race_gender.size else {},
        },
        "age_years": {} if ages.empty else {
            "min": float(ages.min()), "median": float(ages.median()), "mean": round(float(ages.mean()), 2),
            "max": float(ages.max()),
        },
    }


SMALL_CELL = 30  # a race x gender or race x age-group cell with fewer faces is too small to evaluate on
NAMES = {"race": "race", "gender": "gender", "age_bin": "age group"}


def absent_note(stats: dict) -> str:
    """One sentence naming the labels the data set does not have, so their tables and charts are left out."""
    names = [NAMES[name] for name in stats["absent"]]
    return (f"This data set has no {' or '.join(names)} labels: no record carries one, so there is no "
            f"table or chart by {' or '.join(names)}.")


def _title(stats: dict) -> str:
    info = stats["dataset"]
    name = Path(info["root"]).name
    kind = "" if name.lower() == info["format"] else f"{info['format']}, "
    return f"{name} ({kind}{info['records']:,} faces)"


def _cross_table(stats: dict, key: str) -> Table:
    table = pd.DataFrame.from_dict(stats[key], orient="index").fillna(0).astype(int)
    rows = [[race, *[int(v) for v in values], int(values.sum())] for race, values in table.iterrows()]
    small = int((table.to_numpy() < SMALL_CELL).sum())
    return Table(["race", *map(str, table.columns), "all"], rows,
                 caption=f"Faces per cell; {small} cells have fewer than {SMALL_CELL} faces (marked on the heat map)."
                 if small else "Faces per cell.")


def _document(stats: dict, images: dict[str, Image]) -> Document:
    info = stats["dataset"]
    intro = [f"Format **{info['format']}**, race labels **{info['taxonomy'] or 'none'}**: {info['records']:,} records "
             f"read, {info['skipped']} malformed entries skipped. Counts come from the labels alone (no image is "
             "decoded)."]
    if stats["absent"]:
        intro.append(absent_note(stats))
    sections = []
    for name, rows in stats["counts"].items():
        section = Section(f"By {NAMES[name]}", [])
        if name in images:
            section.add(images[name])
        section.add(Table([NAMES[name], "count", "share"], [[r[name], int(r["count"]), f"{r['share']:.1%}"] for r in rows]))
        sections.append(section)
    if "age_histogram" in images:
        a = stats["age_years"]
        sections.append(Section("Age in years", [images["age_histogram"],
                                                 f"Min {a['min']:g}, median {a['median']:g}, mean {a['mean']:g}, "
                                                 f"max {a['max']:g}."]))
    for key, title in (("race_x_gender", "Race x gender"), ("race_x_age_bin", "Race x age group")):
        if stats[key]:
            blocks = [images[k] for k in (key, f"{key}_share") if k in images]
            sections.append(Section(title, [*blocks, _cross_table(stats, key)]))
    balance = [[NAMES.get(k, k.replace("_x_", " x ").replace("_", " ")), v["largest"], v["smallest"],
                v["largest_over_smallest"]] for k, v in stats["balance"].items() if v]
    sections.append(Section("Balance (largest group over smallest)",
                            [Table(["grouping", "largest", "smallest", "ratio"], balance)]))
    if stats["skipped"]:
        shown = stats["skipped"][:200]
        sections.append(Section("Skipped entries", [
            Table(["entry", "reason"], [[f"`{s['name']}`", s["reason"]] for s in shown]),
            *([f"... and {len(stats['skipped']) - len(shown)} more (stats.json lists all)."]
              if len(stats["skipped"]) > len(shown) else [])]))
    return Document(f"Data set statistics: {_title(stats)}", sections, intro)


def _png(figure, name: str, alt: str) -> Image:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return Image(name=f"{name}.png", png=buffer.getvalue(), alt=alt)


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _heat_map(table: pd.DataFrame, values: pd.DataFrame, title: str, xlabel: str, colour_label: str,
              text: callable, name: str) -> Image:
    """A heat map with every cell's number legible (white on dark cells) and small cells hatched."""
    figure = _figure(max(6.0, 2.4 + 0.95 * table.shape[1]), 1.6 + 0.55 * table.shape[0])
    axes = figure.add_subplot()
    image = axes.imshow(values.to_numpy(dtype=float), cmap="Blues", aspect="auto")
    axes.set_xticks(range(table.shape[1]), table.columns, fontsize=10)
    axes.set_yticks(range(table.shape[0]), table.index, fontsize=10)
    axes.set_xlabel(xlabel, fontsize=11)
    axes.set_ylabel("race", fontsize=11)
    low, high = image.get_clim()
    for (i, j), count in np.ndenumerate(table.to_numpy()):
        value = values.iat[i, j]
        dark = (value - low) / ((high - low) or 1) > 0.55
        small = count < SMALL_CELL
        axes.text(j, i, text(count, value) + ("\n(small)" if small else ""), ha="center", va="center",
                  fontsize=9, color="white" if dark else "black", fontweight="bold" if small else "normal")
        if small:
            axes.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor="#d62728",
                                     linewidth=0))
    figure.colorbar(image, ax=axes, label=colour_label)
    axes.set_title(title, fontsize=11)
    return _png(figure, name, title)


def _plots(dataset: LoadedDataset, stats: dict) -> dict[str, Image]:
    frame = dataset.to_frame()
    title = _title(stats)
    images = {}
    if frame["age_years"].notna().any():
        figure = _figure(8, 3.8)
        axes = figure.add_subplot()
        axes.hist(frame["age_years"].dropna(), bins=range(0, int(frame["age_years"].max()) + 2), color="#4c72b0")
        axes.set_xlabel("age (years)", fontsize=11)
        axes.set_ylabel("faces", fontsize=11)
        axes.set_title(f"{title}: faces by age in years", fontsize=11)
        images["age_histogram"] = _png(figure, "age_histogram", f"{title}: faces by age")
    for name, rows in stats["counts"].items():
        figure = _figure(max(6.0, 1.2 * len(rows) + 1.5), 3.8)
        axes = figure.add_subplot()
        bars = axes.bar([str(r[name]) for r in rows], [r["count"] for r in rows], color="#4c72b0")
        axes.bar_label(bars, labels=[f"{r['count']:,}\n{r['share']:.0%}" for r in rows], fontsize=9, padding=2)
        axes.margins(y=0.18)
        axes.set_xlabel(NAMES[name], fontsize=11)
        axes.set_ylabel("faces", fontsize=11)
        axes.tick_params(labelsize=10)
        axes.set_title(f"{title}: faces by {NAMES[name]}", fontsize=11)
        images[name] = _png(figure, name, f"{title}: faces by {NAMES[name]}")
    for key, xlabel in (("race_x_gender", "gender"), ("race_x_age_bin", "age group")):
        table = pd.DataFrame.from_dict(stats[key], orient="index").fillna(0).astype(int)
        if table.empty:
            continue
        images[key] = _heat_map(table, table, f"{title}: faces by race and {xlabel}", xlabel, "faces",
                                lambda count, _: f"{count:,}", key)
        if key == "race_x_age_bin":
            shares = table.div(table.sum(axis=1).replace(0, 1), axis=0)
            images[f"{key}_share"] = _heat_map(
                table, shares, f"{title}: age mix within each race (each row sums to 100%)", xlabel,
                "share of the race", lambda _, share: f"{share:.0%}", f"{key}_share")
    return images


def write_stats(dataset: LoadedDataset, folder: Path) -> dict:
    """Compute the statistics and write stats.json, report.md and the charts into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stats = dataset_stats(dataset)
    (folder / "stats.json").write_text(json.dumps(stats, indent=2))
    images = _plots(dataset, stats)
    for image in images.values():
        (folder / image.name).write_bytes(image.png)
    document = _document(stats, images)
    (folder / "report.md").write_text(document.to_markdown())
    (folder / "report.html").write_text(document.to_html())
    return stats
