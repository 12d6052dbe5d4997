"""The registry of installed models: bundles found by name or path.

Models ship in the package (`facescope/models/<name>/`) or are installed by copying a bundle folder into
`installed_models_dir()` (`$FACESCOPE_CACHE/models/<name>/`). `--model` everywhere takes a name from
`facescope models`, "default", or a bundle folder's path.
"""

from __future__ import annotations

from pathlib import Path

from facescope.bundles.contract import BundleError, BundleInfo, read_info
from facescope.paths import installed_models_dir

PACKAGED_MODELS = Path(__file__).resolve().parent.parent / "models"
DEFAULT_MODEL = "default"


def model_folders() -> dict[str, Path]:
    """Every installed model by name (its folder's name), packaged ones first."""
    found: dict[str, Path] = {}
    for root in (PACKAGED_MODELS, installed_models_dir()):
        try:
            folders = sorted(root.iterdir()) if root.is_dir() else []
        except OSError:  # a models folder that cannot be listed holds no model one could use
            continue
        for folder in folders:
            try:
                listed = (folder / "model.json").is_file()
            except OSError:  # one that cannot be looked into is listed, and read_info says why it is unusable
                listed = True
            if listed:
                found.setdefault(folder.name, folder)
    return found


def resolve_bundle(model: str | Path | None = None) -> Path:
    """The bundle folder for a model name, "default"/None, or a path (a folder, or a file in it)."""
    model = DEFAULT_MODEL if model is None else model
    folders = model_folders()
    if isinstance(model, str) and model in folders:
        return folders[model]
    path = Path(model)
    try:
        if path.is_file():
            path = path.parent
        if (path / "model.json").is_file():
            return path
    except (OSError, ValueError) as error:  # a folder one may not search, a name too long, a NUL byte
        raise BundleError(f"no model {str(model)!r}: {getattr(error, 'strerror', None) or error}") from None
    raise BundleError(f"no model {str(model)!r}: not an installed model ({', '.join(folders) or 'none'}) "
                      "and not a bundle folder with model.json and model.onnx")


def installed_models() -> list[tuple[str, Path, BundleInfo | BundleError]]:
    """(name, folder, its BundleInfo or the error that makes it unusable) for every installed model."""
    listed = []
    for name, folder in model_folders().items():
        try:
            listed.append((name, folder, read_info(folder)))
        except BundleError as error:
            listed.append((name, folder, error))
    return listed
