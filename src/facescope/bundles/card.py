"""The model card, written from a bundle's model.json so that the card, MODEL_CARD.md and the figures the
API serves can never disagree. It follows the sections of Mitchell et al., "Model Cards for Model
Reporting" (FAT* 2019): model details, intended use, factors, metrics, decision thresholds, evaluation
data, training data, quantitative analyses, ethical considerations, caveats and recommendations.

One card, three forms: Markdown (MODEL_CARD.md), HTML, and structured sections for the web page
(`card_sections`, served by GET /api/v1/model). `facescope evaluate --update-bundle` refreshes the
figures. No PyTorch here: the server imports this module.
"""

from __future__ import annotations

import math
from pathlib import Path

from facescope import __version__, labels
from facescope.document import Document, Section, Table, format_number
from facescope.bundles import BundleInfo, resolve_bundle
from facescope.faces.options import NMS_THRESHOLD, default
from facescope.figures import GROUPING_NAMES, metric_name, show, show_difference, show_interval
from facescope.heads import describe_thresholds


def _description(dataset) -> str:
    """What a data set is, as its loader describes it (facescope.data.loaders.FORMATS); "" for one it does
    not know (a manifest of the user's own photos). Imported here only: the loaders load pandas, which the
    server does not otherwise need at start-up."""
    from facescope.data.loaders import FORMATS

    spec = FORMATS.get(str(dataset).lower())
    return spec.description if spec else ""


def _with_interval(key: str, value, interval) -> str:
    shown = show(key, value)
    return f"{shown} ({show_interval(key, *interval)})" if interval else shown


def _groups_table(rows: dict[str, dict], intervals: dict[str, dict]) -> Table:
    columns = list(next(iter(rows.values())).keys())
    return Table(["group", *[metric_name(c) for c in columns]],
                 [[group, *[_with_interval(c, figures.get(c), intervals.get(group, {}).get(c)) if c != "n"
                            else int(figures.get(c, 0)) for c in columns]] for group, figures in rows.items()])


def _evaluation_sections(evaluation: dict, title: str) -> list[Section]:
    intervals = evaluation.get("intervals", {})
    overall_intervals = intervals.get("overall", {})
    resamples = intervals.get("bootstrap_resamples")
    parts = [
        f"On {format_number(evaluation.get('faces'))} faces of the {evaluation.get('split')} split of "
        f"{evaluation.get('dataset')}" + (f", evaluated {evaluation['date']}" if evaluation.get("date") else "")
        + ". Figures in brackets are 95% bootstrap intervals"
        + (f" ({format_number(resamples)} resamples of the {intervals.get('unit', 'face')}s)." if resamples
           else " (none recorded: rerun `facescope evaluate --update-bundle`)."),
        f"Reproduce: `{evaluation.get('command')}`",
        Section("Overall", [Table(["figure", "value (95% interval)"],
                                  [[metric_name(k), _with_interval(k, v, overall_intervals.get(k))]
                                   for k, v in evaluation.get("overall", {}).items()])]),
    ]
    for key, interval_key, name in (("by_race", "by_race", "By race"),
                                    ("by_race_gender", "by_race_gender", "By race x gender")):
        if evaluation.get(key):
            parts.append(Section(name, [_groups_table(evaluation[key], intervals.get(interval_key, {}))]))
    gaps = evaluation.get("gaps", [])
    if gaps:
        parts.append(Section(f"Gaps between groups (groups of at least {evaluation.get('min_group_size')} faces)", [
            Table(["grouping", "figure", "lowest", "highest", "difference (95% interval)"],
                  [[GROUPING_NAMES.get(g["grouping"], g["grouping"]), metric_name(g["metric"]),
                    f"{g['lowest_group']} ({show(g['metric'], g['lowest'])})",
                    f"{g['highest_group']} ({show(g['metric'], g['highest'])})",
                    _difference(g)] for g in gaps])]))
    if evaluation.get("equalized_odds_difference") is not None:
        parts.append(f"Equalized-odds difference of the gender estimate across races (Female the positive "
                     f"class): {evaluation['equalized_odds_difference']:.3f}.")
    parts += _estimated_sections(evaluation)
    standardised = evaluation.get("age_standardised_gaps") or []
    if standardised:
        parts.append(Section("Race gaps, raw and with every race given the same age mix", [
            "What remains after age standardisation is not an age effect.",
            Table(["figure", "raw gap", "same-age-mix gap"],
                  [[metric_name(g["metric"]), show_difference(g["metric"], g["raw_gap"]), show_difference(g["metric"], g["standardised_gap"])]
                   for g in standardised])]))
    return [Section(title, parts)]


def _estimated_sections(evaluation: dict) -> list[Section]:
    """The figures by estimated age group (what a user sees beside an estimate) and what the default
    confidence thresholds cost each group."""
    parts = []
    by_age = (evaluation.get("by_estimated_group") or {}).get("figures", {}).get("estimated age group", {})
    if by_age:
        shown = [f for f in ("gender_accuracy", "race_accuracy", "age_mae") if any(f in g for g in by_age.values())]
        rows = [[group, *[(f"{_with_interval(f, g[f]['value'], g[f].get('interval'))} ({g[f]['faces']})"
                           if f in g else "") for f in shown]]
                for group, g in sorted(by_age.items(), key=lambda item: labels.AGE_BIN_LABELS.index(item[0])
                                       if item[0] in labels.AGE_BIN_LABELS else len(labels.AGE_BIN_LABELS))]
        parts.append(Section("By estimated age group", [
            "The faces the model estimated in each age group (a user knows the estimate, not the truth); "
            "each estimate is shown with the figure of the most specific such group with at least "
            f"{(evaluation.get('by_estimated_group') or {}).get('min_faces', 30)} test faces (test faces in brackets).",
            Table(["estimated age group", *[metric_name(f) for f in shown]], rows)]))
    cost = (evaluation.get("default_thresholds") or {}).get("cost", [])
    if cost:
        parts.append(Section("What the default confidence thresholds cost each group", [
            "Share of faces still answered at the default threshold, lowest first per head (the groups that "
            "lose their answers first), and the accuracy of those answers against answering every face.",
            Table(["head", "threshold", "group", "faces", "answered", "accuracy answered", "accuracy if all answered"],
                  [[c["head"], f"{c['threshold']:.0%}", c["group"] if c["grouping"] == "overall" else
                    f"{GROUPING_NAMES.get(c['grouping'], c['grouping'])}: {c['group']}", int(c["faces"]), f"{c['coverage']:.0%}",
                    show("gender_accuracy", c["answered_accuracy"]), show("gender_accuracy", c["accuracy"])]
                   for c in cost])]))
    return parts


def _difference(gap: dict) -> str:
    text = show_difference(gap["metric"], gap["difference"])
    if gap.get("difference_low") is None or gap.get("difference") is None:
        return text
    return f"{text} ({show_interval(gap['metric'], gap['difference_low'], gap['difference_high'], difference=True)})"


def card_document(info: BundleInfo) -> Document:
    """The model card of a bundle, every section of Mitchell et al."""
    training = info.training_data
    evaluation = info.evaluation or {}
    datasets = training.get("datasets", [])
    trained_on = {d["name"] for d in datasets}
    sources = "; ".join(d.get("description") or _description(d["name"]) or d["title"] for d in datasets) or "unknown"
    age_output = ("an expected age in years (the mean of a distribution over whole years 0-100) and the most "
                  "likely of the 9 FairFace age groups" if info.age_mode == "years" else
                  "the most likely of the 9 FairFace age groups")
    recipe = training.get("recipe", [])
    details = Section("Model details", [
        Table(["", ""], [
            ["name", info.name], ["version", f"{info.name}, bundle format {info.format}, facescope {__version__}"],
            ["date", evaluation.get("date", "not recorded")],
            ["developed by", "the facescope project"],
            ["model type", f"{info.backbone} convolutional network, {_count(len(info.heads), 'head')}: "
                           f"{', '.join(head.describe() for head in info.heads)}; {info.input_size} px "
                           "aligned face crops, run by onnxruntime"],
            ["precision", _precision(info)],
            ["outputs", _outputs(info, age_output)],
            ["training", f"{len(recipe)} stage(s), supervised, cross-entropy per head; see Training data"
                         if recipe else "see Training data"],
            ["licence", info.licence],
            ["citation", f"facescope project, \"{info.name}\" (facescope {__version__}); training data: "
                         f"{', '.join(d['title'] for d in datasets) or 'unknown'}"],
            ["contact", "the facescope project's issue tracker"],
        ]),
    ])
    intended = Section("Intended use", [
        info.intended_use,
        "Primary users: researchers, teachers and auditors of face analysis systems.",
    ])
    must_not = Section("It must not be used for", [list(info.must_not_be_used_for)])
    factors = Section("Factors", [
        "Groups: race (the data set's apparent-race labels), gender (binary, as annotated) and age group, and "
        "their intersections (race x gender, race x age group). These are the groups along which face "
        "analysis systems have been shown to err unequally (Buolamwini and Gebru, \"Gender Shades\", 2018), and "
        "the ones the training data labels.",
        "Instrumentation and environment, not evaluated here: pose, light, image quality, camera, occlusion "
        "(glasses, masks, make-up). The evaluation photos are aligned web crops; results on other photos can "
        "differ.",
    ])
    metrics = Section("Metrics", [[
        "accuracy: share of faces whose label is right (for gender, race and age group); within a race, race "
        "accuracy is that race's recall.",
        "age error: mean absolute difference between estimated and true age, in years; ages within 5 years: "
        "share of estimates at most 5 years off; age group right or next group: the estimated group is the "
        "true one or next to it.",
        "calibration error (ECE): top-label expected calibration error over 15 equal-width confidence bins, "
        "the face-weighted mean of |accuracy - mean confidence|; 0 means a confidence of 0.8 is right 80% "
        "of the time.",
        "equalized-odds difference (gender): the larger of the between-race gaps in true-positive rate (women "
        "called women) and false-positive rate (men called women); Female is the positive class.",
        "gap: highest minus lowest group among groups of at least the minimum size; intervals are 95% "
        "bootstrap percentile intervals (fairlearn's MetricFrame definition), resampling faces.",
    ]])
    thresholds = Section("Decision thresholds", [[
        "gender and race: the label of highest probability (arg-max), answered \"uncertain\" where that "
        "probability is under the confidence threshold (default "
        + describe_thresholds()
        + ", the age head's on its age group; `--threshold` in the CLI, `thresholds` in the API, the page's "
        "control); the probabilities are always given. What the defaults cost each group is under "
        "Quantitative analyses.",
        "age: the expected value of the age distribution (years) and the arg-max age group.",
        f"face detection (photos): a face is reported when the detector's score is at least "
        f"{format_number(default('score_threshold'))} (non-maximum suppression at IoU "
        f"{format_number(NMS_THRESHOLD)}); faces below it are not estimated.",
    ]])
    evaluated = [evaluation] + list(evaluation.get("other_datasets", {}).values()) if evaluation else []
    evaluation_data = Section("Evaluation data", [
        [f"{e.get('dataset')}: {format_number(e.get('faces'))} faces, {e.get('split')} split"
         + (" (held out from training)" if str(e.get("source_dataset", e.get("dataset", ""))).lower()
            in trained_on else " (another source than the training data)")
         + (f". {described}" if (described := _description(e.get("dataset"))) else "") for e in evaluated] or ["No evaluation yet: run `facescope evaluate --update-bundle`."],
    ])
    training_data = Section("Training data", [f"Data sets: {sources}"])
    for dataset in datasets:
        splits = ", ".join(f"{k} {format_number(v)}" for k, v in dataset["splits"].items())
        people = f", {format_number(dataset['people'])} people, each in one split" if dataset.get("people") else ""
        training_data.add(f"{dataset['title']}: split {splits} photos{people}. Licence: {dataset['licence']}")
        for key, name, order in (("train_by_race", "race", info.race_labels), ("train_by_gender", "gender", labels.GENDERS),
                                 ("train_by_age_bin", "age group", labels.AGE_BIN_LABELS)):
            counts = dataset.get(key) or {}
            total = sum(counts.values())
            if total:
                training_data.add(Table([f"{dataset['title']}: {name}", "training photos", "share"],
                                        [[label, int(counts[label]), f"{100 * counts[label] / total:.1f}%"]
                                         for label in order if label in counts]))
    if recipe:
        training_data.add("How it was trained, stage by stage:", Table(
            ["stage", "network", "input", "started from", "epochs (best)", "batch", "learning rate", "balancing",
             "augmentation", "minutes"],
            [[i, s["backbone"], f"{s['input_size']} px", s["start"], f"{s['epochs_run']} ({s['best_epoch']})",
              s["batch_size"], format_number(s["lr"]), s["balance"], "on" if s["augment"] else "off",
              format_number(s["minutes"])] for i, s in enumerate(recipe, 1)]))
        for stage in recipe:
            for head, by_label in (stage.get("logit_shifts") or {}).items():
                training_data.add(
                    f"Decision threshold: after training, {head} " + ", ".join(
                        f"{label}'s logit was raised by {value:g} (its odds times {math.exp(value):.2f})"
                        for label, value in by_label.items()) +
                    " (`export --logit-shift`; for gender, benchmarks/gender_shift.py chooses it on the validation "
                    "splits so that women and men are read wrong equally often).")
    quantitative = (_evaluation_sections(evaluation, "Quantitative analyses") if evaluation else
                    [Section("Quantitative analyses", ["No evaluation figures yet: run `facescope evaluate "
                                                        "--update-bundle`."])])
    for name, other in evaluation.get("other_datasets", {}).items():
        quantitative += _evaluation_sections(other, f"Quantitative analyses on {name}")
    ethics = Section("Ethical considerations", [[
        "Data: the training photos were collected from the web without the consent of the people shown for "
        "this use; their labels were estimated by an algorithm and checked by annotators, not given by the "
        "people themselves.",
        "Gender is annotated as binary (Female, Male); the model cannot represent non-binary people and will "
        "assign them one of two labels.",
        "Race is apparent race as annotated, in coarse, culturally specific categories (UTKFace's 'Others' "
        "merges many groups); it is not a person's actual or self-identified race or ethnicity.",
        "Risks: misuse for profiling or surveillance, and harm from treating an estimate as a fact about a "
        "person. Mitigations: the uses above are excluded, every output carries probabilities, and this "
        "card reports error rates per group with their uncertainty.",
    ]])
    caveats = Section("Caveats and recommendations", [
        [*info.limitations,
         "groups smaller than the minimum size are listed but not compared: their figures are too noisy to rank",
         "evaluate on photos like yours before relying on any figure here; `facescope audit` compares tools "
         "on your own labelled photos"],
    ])
    return Document(f"Model card: {info.name}", [
        details, intended, must_not, factors, metrics, thresholds, evaluation_data, training_data, *quantitative,
        ethics, caveats])


def card_json(info: BundleInfo) -> dict:
    """GET /api/v1/model's `card` field: {"sections": card_sections(info)}."""
    return {"sections": card_sections(info)}


def _count(number: int, noun: str) -> str:
    words = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    return f"{words[number] if number < len(words) else number} {noun}{'' if number == 1 else 's'}"


def _outputs(info: BundleInfo, age_output: str) -> str:
    """`probabilities for each gender and race label, and <the age output>`, from the model's heads."""
    named = [head.name for head in info.heads if not head.is_age]
    parts = [f"probabilities for each {' and '.join(named)} label"] if named else []
    if info.age_mode is not None:
        parts.append(age_output)
    return ", and ".join(parts)


def _precision(info: BundleInfo) -> str:
    quantization = info.quantization
    passes = "; each face and its mirror image, outputs averaged" if info.test_time_mirror else ""
    if not quantization:
        return f"float32{passes}"
    return (f"{quantization['weights']}: {quantization['method']}; activation ranges: the "
            f"{quantization['calibration']} on {quantization['calibration_crops']} crops of the training split"
            f"{passes}")


def card_sections(info: BundleInfo) -> list[dict]:
    """The card as the API serves it: [{title, paragraphs, tables: [{columns, rows}]}], one entry a section
    (subsections follow their section, titled "Section: subsection")."""
    sections = []

    def walk(section: Section, prefix: str = "") -> None:
        title = f"{prefix}{section.title}"
        sections.append({**section.to_dict(), "title": title})
        for block in section.blocks:
            if isinstance(block, Section):
                walk(block, f"{title}: ")

    for section in card_document(info).sections:
        walk(section)
    return sections


def render_model_card(info: BundleInfo) -> str:
    return card_document(info).to_markdown()


def write_model_card(bundle: str | Path | None) -> Path:
    folder = resolve_bundle(bundle)
    info = BundleInfo.from_json((folder / "model.json").read_text())
    path = folder / "MODEL_CARD.md"
    path.write_text(render_model_card(info))
    return path
