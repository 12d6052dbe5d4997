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
        keys = [f"{head.name}_mae" if head.is_age else f"{head.name}_accuracy" for head in info.heads]
        figures = ", ".join(f"{key} {overall[key]:.3f}" for key in keys if overall.get(key) is not None)
        outputs = ", ".join(f"{head.describe()} ({'years' if head.kind == 'age_years' else 'groups'})"
                            if head.is_age else head.describe() for head in info.heads)
        typer.echo(f"{name}  ({info.name}, {info.backbone} at {info.input_size} px)\n"
                   f"  outputs: {outputs}\n"
                   f"  trained on: {datasets}\n"
                   f"  figures: {figures or 'not evaluated'}" + (f" on {info.evaluation.get('dataset')} "
                                                                 f"{info.evaluation.get('split')}" if figures else "") +
                   f"\n  licence: {info.licence}\n  folder: {folder}")
    typer.echo(f"(install a model by copying its bundle folder into {installed_models_dir()})", err=True)

