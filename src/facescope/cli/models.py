"""`facescope models`: the installed models, with their labels, training data, licence and figures."""

from __future__ import annotations

import typer


def models_command() -> None:
    """List installed models: packaged ones and those copied into $FACESCOPE_CACHE/models/NAME/.
    Use a name with --model anywhere (predict, serve, evaluate).

    \b
    Examples:
      facescope models
      cp -r my-bundle ~/.cache/facescope/models/mine && facescope predict photo.jpg --model mine
    """
    from facescope.bundles import BundleError, installed_models
    from facescope.paths import installed_models_dir

    for name, folder, info in installed_models():
        if isinstance(info, BundleError):
            typer.echo(f"{name}  UNUSABLE: {info}")
            continue
        datasets = ", ".join(d["title"] for d in info.training_data.get("datasets", [])) or "unknown"
        overall = info.evaluation.get("overall", {})
        figures = ", ".join(f"{key} {overall[key]:.3f}" for key in ("gender_accuracy", "race_accuracy", "age_mae")
                            if overall.get(key) is not None)
        typer.echo(f"{name}  ({info.name}, {info.backbone} at {info.input_size} px)\n"
                   f"  outputs: {'; '.join(_describe(head) for head in info.heads)}\n"
                   f"  trained on: {datasets}\n"
                   f"  figures: {figures or 'not evaluated'}" + (f" on {info.evaluation.get('dataset')} "
                                                                 f"{info.evaluation.get('split')}" if figures else "") +
                   f"\n  licence: {info.licence}\n  folder: {folder}")
    typer.echo(f"(install a model by copying its bundle folder into {installed_models_dir()})", err=True)


def _describe(head) -> str:
    if head.kind == "label":
        return f"{head.name} ({head.taxonomy}: {', '.join(head.labels)})"
    return f"{head.name} ({'years and age groups' if head.kind == 'age_years' else 'age groups'})"
