"""The model card: MODEL_CARD.md written from a bundle's model.json, so the card and the figures the
API serves can never disagree. `facescope evaluate --update-bundle` refreshes both."""

from __future__ import annotations

from pathlib import Path

from facescope.bundles import BundleInfo, resolve_bundle

def _figure(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _table(rows: dict[str, dict], columns: list[str]) -> list[str]:
    lines = ["| group | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for group, figures in rows.items():
        lines.append(f"| {group} | " + " | ".join(_figure(figures.get(c, "")) for c in columns) + " |")
    return lines


def render_model_card(info: BundleInfo) -> str:
    training = info.training_data
    lines = [
        f"# Model card: {info.name}", "",
        f"A {info.backbone} network with three heads (gender; race, {info.race_taxonomy}: "
        f"{', '.join(info.race_labels)}; age as a distribution over "
        f"{'whole years 0-100' if info.age_mode == 'years' else 'the 9 FairFace bins'}), "
        f"on {info.input_size} px aligned face crops, run by onnxruntime.", "",
        "## Licence", "", info.licence, "",
        "## Intended use", "", info.intended_use, "",
        "## It must not be used for", "", *[f"- {item}" for item in info.must_not_be_used_for], "",
        "Race and gender here are *apparent* categories as annotated in the training data, estimated from "
        "appearance; a person's own identity may differ, and many people fit none of the categories.", "",
        "## Training data", "",
    ]
    for dataset in training.get("datasets", []):
        counts = ", ".join(f"{k} {v}" for k, v in dataset["splits"].items())
        people = f" ({dataset['people']} people, each in one split)" if dataset.get("people") else ""
        lines += [f"- **{dataset['title']}**: {counts}{people}. Licence: {dataset['licence']}"]
    if training.get("recipe"):
        lines += ["", "How it was trained, stage by stage:", ""]
    for number, stage in enumerate(training.get("recipe", []), 1):
        lines += [f"{number}. {stage['backbone']} at {stage['input_size']} px from {stage['start']}; "
                  f"{stage['epochs_run']} epochs (best validation loss at epoch {stage['best_epoch']}), batch "
                  f"{stage['batch_size']}, learning rate {stage['lr']}, balance {stage['balance']}, augmentation "
                  f"{'on' if stage['augment'] else 'off'}; {stage['minutes']} minutes."]
    evaluation = info.evaluation
    lines += ["", "## Evaluation", ""]
    if not evaluation:
        lines += ["No evaluation figures yet: run `facescope evaluate --update-bundle`."]
    else:
        lines += [f"On {evaluation.get('faces')} faces of the {evaluation.get('split')} split of "
                  f"{evaluation.get('dataset')} (held out from training). Reproduce: `{evaluation.get('command')}`", "",
                  "### Overall", "", "| figure | value |", "|---|---:|"]
        lines += [f"| {k} | {_figure(v)} |" for k, v in evaluation.get("overall", {}).items()]
        for key, title in (("by_race", "By race"), ("by_race_gender", "By race x gender")):
            rows = evaluation.get(key)
            if rows:
                lines += ["", f"### {title}", "", *_table(rows, list(next(iter(rows.values())).keys()))]
        lines += ["", "### Gaps between groups (groups of at least "
                  f"{evaluation.get('min_group_size')} faces)", "",
                  "| grouping | figure | lowest | highest | difference | ratio (low/high) |", "|---|---|---|---|---:|---:|"]
        lines += [f"| {g['grouping']} | {g['metric']} | {g['lowest_group']} ({_figure(g['lowest'])}) | "
                  f"{g['highest_group']} ({_figure(g['highest'])}) | {_figure(g['difference'])} | "
                  f"{_figure(g['ratio'])} |" for g in evaluation.get("gaps", [])]
        lines += ["", f"Equalized-odds difference of the gender head across races: "
                  f"{_figure(evaluation.get('equalized_odds_difference'))}.", ""]
        standardised = evaluation.get("age_standardised_gaps") or []
        if standardised:
            lines += ["### Race gaps, raw and age-standardised", "",
                      "Each race re-weighted to the same age mix; what remains is not an age effect.", "",
                      "| figure | raw gap | age-standardised gap | reading |", "|---|---:|---:|---|"]
            lines += [f"| {g['metric']} | {_figure(g['raw_gap'])} | {_figure(g['standardised_gap'])} | {g['reading']} |"
                      for g in standardised]
    lines += ["", "## Known failure modes", "", *[f"- {item}" for item in info.limitations], ""]
    return "\n".join(lines)


def write_model_card(bundle: str | Path | None) -> Path:
    folder = resolve_bundle(bundle)
    info = BundleInfo.from_json((folder / "model.json").read_text())
    path = folder / "MODEL_CARD.md"
    path.write_text(render_model_card(info))
    return path
