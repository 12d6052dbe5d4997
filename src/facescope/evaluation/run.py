"""`facescope evaluate`'s work: a bundle and a dataset in; the predictions table, the figures, the report
folder and, on request, the bundle's `evaluation` section out."""

from __future__ import annotations

import json
import logging
import shlex
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from facescope.data import FaceRecord, LoadedDataset, load_dataset
from facescope.data.splits import SPLITS, assign_splits
from facescope.evaluation.estimated import threshold_cost
from facescope.evaluation.metrics import MIN_GROUP_SIZE, EvaluationResult, evaluate, map_truth_races
from facescope.evaluation.report import write_report
from facescope.evaluation.uncertainty import N_BOOT
from facescope.inference.predictor import Predictor
from facescope import labels
from facescope.heads import DEFAULT_THRESHOLDS, Head
from facescope.inference.results import AgeEstimate, Estimates
from facescope.bundles import read_bundle_info, resolve_bundle
from facescope.bundles.card import write_model_card
from facescope.faces.crops import build_crops

log = logging.getLogger(__name__)
# The figures a bundle's model.json keeps (the report folder keeps all of them).
BUNDLE_METRICS = ("gender_accuracy", "race_accuracy", "age_bin_accuracy", "age_bin_one_off_accuracy", "age_mae",
                  "age_within_5", "gender_ece", "race_ece", "age_bin_ece")


def command_line(command: str, options: list[tuple[str, object]]) -> str:
    """The shell command that reruns a run: `command` then each option that has a value (None and False
    are left out, True is a bare flag, a list repeats the option), every value quoted for the shell."""
    words = command.split()
    for flag, value in options:
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if item is None or item is False:
                continue
            words += [flag] if item is True else [flag, str(item.value if hasattr(item, "value") else item)]
    return " ".join(shlex.quote(word) for word in words)


def select_records(dataset: LoadedDataset, split: str, seed: int = 0, val_fraction: float = 0.1,
                   test_fraction: float = 0.1, limit: int | None = None) -> tuple[list[FaceRecord], str]:
    """The records of `split` ("all" for every record) and how the split was made. A split manifest (a
    training run's splits.csv) carries its split in `partition`, as `facescope train --splits` reads it;
    any other dataset is split by assign_splits with the training arguments."""
    records = dataset.records
    if split == "all":
        how = "all records"
    elif dataset.format == "manifest" and all(r.partition in SPLITS for r in records):
        records = [r for r in records if r.partition == split]
        how = "the manifest's partition column"
    else:
        splits = assign_splits(records, val_fraction, test_fraction, seed)
        records = [r for r, s in zip(records, splits) if s == split]
        how = (f"stratified by race x gender as training splits: {val_fraction:.0%} validation, "
               f"{test_fraction:.0%} test, seed {seed}")
    if limit is not None and limit < len(records):
        # A seeded sample rather than the first N: records are in file-name order, which for UTKFace is age order.
        chosen = np.sort(np.random.default_rng(seed).choice(len(records), limit, replace=False))
        records = [records[i] for i in chosen]
        how += f", a seeded sample of {limit}"
    return records, how


def truth_table(records: list[FaceRecord]) -> pd.DataFrame:
    """The records' labels: source, gender, race, age_years (NaN where unknown), age_bin."""
    return pd.DataFrame({
        "source": [r.source for r in records],
        "gender": [r.gender for r in records],
        "race": [r.race for r in records],
        "age_years": pd.array([r.age_years for r in records], dtype="float64"),
        "age_bin": [r.age_bin for r in records],
    })


def prediction_columns(estimates: list[Estimates], views: dict[str, tuple[str, str]] | None = None) -> pd.DataFrame:
    """Predictor.estimate_crops' answers as the predictions table's pred_* and p_* columns, one set per
    output. `views`: output name -> (its taxonomy, a coarser one) to score it in, its probabilities summed
    over each coarse class's fine ones (a 7-race answer on UTKFace's 5 races)."""
    views = views or {}
    rows = []
    for estimate in estimates:
        row = {}
        for name, value in estimate:
            if isinstance(value, AgeEstimate):
                row.update({f"pred_{name}_bin": value.bin, f"pred_{name}_years": np.nan if value.years is None else value.years,
                            **{f"p_{name}_bin_{label}": p for label, p in value.bin_probs.items()}})
            elif value is not None:
                probs = value.probs if name not in views else labels.coarse_probabilities(value.probs, *views[name])
                row.update({f"pred_{name}": max(probs, key=probs.get), **{f"p_{name}_{k}": p for k, p in probs.items()}})
        rows.append(row)
    return pd.DataFrame(rows)


def further_truth(truth: pd.DataFrame, heads: tuple[Head, ...], compared_in: dict[str, str],
                  views: dict[str, tuple[str, str]]) -> pd.DataFrame:
    """`truth` with a column of its own for each label head that learns from another head's field (a second
    race output learns from `race`), so that metrics score it as any other: the field's labels, where
    they are in the head's taxonomy (`compared_in`: each field's) or a coarser one, whose view of the
    head's answers is added to `views`. A head whose answers cannot be compared with them is not scored."""
    for head in heads:
        field, name = head.learns_from, head.name
        if head.is_age or field == name or field not in compared_in or field not in truth:
            continue
        if head.taxonomy != compared_in[field]:
            if (head.taxonomy, compared_in[field]) not in labels.RACE_MAPPINGS:
                continue
            views[name] = (head.taxonomy, compared_in[field])
        truth = truth.assign(**{name: truth[field]})
    return truth


def predictions_table(predictor: Predictor, records: list[FaceRecord],
                      taxonomy: str) -> tuple[pd.DataFrame, dict | None, int]:
    """(table, cross-taxonomy note or None, unreadable images) for records whose races are in `taxonomy`.
    Where the model's races are a finer split of the data's, its answers are scored in the data's
    taxonomy (their coarse view); where the data's are finer, or another split, the truth is mapped
    first, so dropped faces are never aligned."""
    if not records:
        raise ValueError("no faces to evaluate: the selected split is empty")
    truth, cross_taxonomy, views = truth_table(records), None, {}
    model_taxonomy = predictor.info.race_taxonomy
    if model_taxonomy and taxonomy != model_taxonomy and any(r.race for r in records):
        if (model_taxonomy, taxonomy) in labels.RACE_MAPPINGS:
            views["race"] = (model_taxonomy, taxonomy)
            cross_taxonomy = {"source": model_taxonomy, "target": taxonomy, "rows_kept": len(truth), "rows_dropped": 0,
                              "dropped_by_race": {}, "mapping": labels.RACE_MAPPINGS[(model_taxonomy, taxonomy)],
                              "mapped": "predictions"}
        else:
            truth, cross_taxonomy = map_truth_races(truth, taxonomy, model_taxonomy)
    truth_mapped = cross_taxonomy is not None and cross_taxonomy.get("mapped") != "predictions"
    compared_in = {"gender": labels.GENDER.name, "race": model_taxonomy if truth_mapped else taxonomy}
    truth = further_truth(truth, predictor.info.heads, compared_in, views)
    crops, readable = build_crops([records[i] for i in truth.index], predictor.input_size,
                                  predictor.info.framing).only_found()
    if not len(readable):
        raise ValueError("no face found among the selected images")
    estimates = predictor.estimate_crops(crops)
    table = pd.concat([truth.iloc[readable].reset_index(drop=True), prediction_columns(estimates, views)], axis=1)
    return table, cross_taxonomy, len(truth) - len(readable)


def evaluation_section(result: EvaluationResult, context: dict) -> dict:
    """The compact `evaluation` section of model.json: what was evaluated and when, the overall, per-race
    and per-race-x-gender figures with their 95% intervals, their gaps and the gender head's
    equalized-odds difference."""
    kept = [m for m in BUNDLE_METRICS if m in result.overall]

    def by(grouping: str) -> dict:
        groups = result.by_group[result.by_group["grouping"] == grouping].set_index("group")
        return json.loads(groups[["n", *[m for m in kept if m in groups]]].round(4).to_json(orient="index"))

    def intervals(grouping: str) -> dict:
        rows = result.intervals[(result.intervals["grouping"] == grouping) & result.intervals["metric"].isin(kept)]
        return {group: {r.metric: [round(r.low, 4), round(r.high, 4)] for r in part.itertuples()
                        if np.isfinite(r.low)} for group, part in rows.groupby("group", sort=False)}

    gaps = result.gaps[result.gaps["grouping"].isin(["race", "race x gender"]) & result.gaps["metric"].isin(kept)]
    return {
        **{key: context[key]
           for key in ("dataset", "source_dataset", "split", "seed", "val_fraction", "test_fraction", "limit",
                       "faces")},
        "date": date.today().isoformat(),
        "min_group_size": result.min_group_size,
        "cross_taxonomy": result.cross_taxonomy,
        "overall": {m: round(result.overall[m], 4) for m in kept},
        "intervals": {"bootstrap_resamples": result.n_boot, "unit": result.resampling,
                      "overall": intervals("overall").get("all", {}), "by_race": intervals("race"),
                      "by_race_gender": intervals("race x gender")},
        "by_race": by("race"),
        "by_race_gender": by("race x gender"),
        "gaps": json.loads(gaps.round(4).to_json(orient="records")),
        "equalized_odds_difference": result.equalized_odds["difference"],
        "age_standardised_gaps": json.loads(result.age_standardised.gaps.round(4).to_json(orient="records")),
        "by_estimated_group": result.by_estimate,
        "default_thresholds": {"thresholds": DEFAULT_THRESHOLDS, "cost": threshold_cost(result.coverage)},
        "command": context["command"],
    }


def write_bundle_evaluation(bundle: str | Path | None, section: dict) -> Path:
    """Record an evaluation in the bundle's model.json: the first one, or a new one on the same data set
    as the main `evaluation` section (a split manifest counts as the data set it was made from), replaces
    that section; one on any other data set goes under `evaluation.other_datasets[<name>]`, so the card
    lists every data set the model was evaluated on. Returns the model.json path."""
    path = resolve_bundle(bundle) / "model.json"
    info = read_bundle_info(bundle)
    main = str(info.evaluation.get("source_dataset", "")).lower()
    if main and section["source_dataset"].lower() != main:
        info.evaluation.setdefault("other_datasets", {})[section["dataset"]] = section
    else:
        section["other_datasets"] = info.evaluation.get("other_datasets", {})
        info.evaluation = section
    path.write_text(info.to_json())
    return path


def run_evaluation(model: str | Path | None, data: str | Path, split: str = "test", seed: int = 0,
                   val_fraction: float = 0.1, test_fraction: float = 0.1, output: str | Path | None = None,
                   limit: int | None = None, min_group_size: int = MIN_GROUP_SIZE,
                   update_bundle: bool = False, n_boot: int = N_BOOT) -> tuple[EvaluationResult, Path]:
    """Evaluate a bundle (None: the bundled default) on a split of a dataset; write the report folder
    (default reports/<model name>) and, with `update_bundle`, the bundle's evaluation section.
    Returns the figures and the report folder."""
    bundle = resolve_bundle(model)
    predictor = Predictor(bundle)
    dataset = load_dataset(data)
    records, how = select_records(dataset, split, seed, val_fraction, test_fraction, limit)
    table, cross_taxonomy, unreadable = predictions_table(predictor, records, dataset.taxonomy)
    result = evaluate(table, min_group_size, cross_taxonomy, n_boot=n_boot, seed=seed)
    context = {
        "model": predictor.info.name, "bundle": str(model) if model else "default (bundled with facescope)",
        "data": str(data), "dataset": Path(data).name, "source_dataset": dataset.source_format,
        "format": dataset.format, "data_taxonomy": dataset.taxonomy, "model_taxonomy": predictor.info.race_taxonomy,
        "age_mode": predictor.info.age_mode, "split": split, "split_made_by": how, "seed": seed,
        "val_fraction": val_fraction, "test_fraction": test_fraction, "limit": limit, "faces": len(table),
        "unreadable_images": unreadable,
        "command": command_line("facescope evaluate", [
            ("--model", model or "default"), ("--data", data), ("--split", split), ("--seed", seed),
            ("--val-fraction", val_fraction), ("--test-fraction", test_fraction), ("--limit", limit),
            ("--min-group-size", min_group_size), ("--n-boot", n_boot)]),
    }
    folder = write_report(result, table, Path(output or Path("reports") / predictor.info.name), context)
    if update_bundle:
        log.info("evaluation written to %s", write_bundle_evaluation(bundle, evaluation_section(result, context)))
        log.info("model card written to %s", write_model_card(bundle))
    return result, folder
