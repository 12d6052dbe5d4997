"""Where facescope reads and writes, decided in one place.

- the data sets: `FACESCOPE_DATA`, else `../shared/data` beside the current folder (the development layout);
- the cache (aligned crops of data sets, downloaded-at-set-up weights, installed models):
  `FACESCOPE_CACHE`, else `~/.cache/facescope`. Deleting it is always safe: it is remade on demand.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_root() -> Path:
    return Path(os.environ.get("FACESCOPE_DATA") or Path.cwd().parent / "shared" / "data")


def cache_dir() -> Path:
    return Path(os.environ.get("FACESCOPE_CACHE") or Path.home() / ".cache" / "facescope")


def installed_models_dir() -> Path:
    """Where `facescope models` looks for models besides those shipped in the package."""
    return cache_dir() / "models"
