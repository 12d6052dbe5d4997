"""Model bundles, PyTorch-free: the contract model.json declares (and its checks against model.onnx),
and the registry of installed models."""

from facescope.bundles.contract import BundleError, BundleInfo, LoadedBundle, ModelInput, ModelOutput, load_bundle, read_info
from facescope.bundles.registry import DEFAULT_MODEL, installed_models, resolve_bundle


def read_bundle_info(model=None) -> BundleInfo:
    """The declarations of a model given by name, "default"/None, or path."""
    return read_info(resolve_bundle(model))


__all__ = ["BundleError", "BundleInfo", "LoadedBundle", "ModelInput", "ModelOutput", "load_bundle", "read_info",
           "DEFAULT_MODEL", "installed_models", "resolve_bundle", "read_bundle_info"]
