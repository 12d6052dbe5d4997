"""Datasets: one record for every format, loaders, reproducible splits and label statistics."""

from facescope.data.loaders import detect_format, load_dataset
from facescope.data.records import FaceRecord, LoadedDataset, SkippedEntry

__all__ = ["detect_format", "load_dataset", "FaceRecord", "LoadedDataset", "SkippedEntry"]
