"""Engines: what runs a prediction over its inputs, one registry of them.

Every engine is a function `run(source, predictor, sink) -> exit status`:
  source     facescope.inference.sources.Inputs: the arguments, a manifest, how folders and videos are read
  predictor  PredictorSpec: the model and its options, made into a Predictor where the engine runs it
  sink       facescope.inference.sinks: StreamSink (records on stdout, annotated copies) or ShardSink
`facescope predict` picks the source, the engine and the sink, nothing more: the engine named by
`--engine`, or else the first engine here that reads every input given. A new engine is one module with
its `run`, and one entry in ENGINES.

Light: each engine's module is imported only when it runs, so `facescope predict -h` loads no model library.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from facescope.heads import Head, parse_thresholds
from facescope.inference.sinks import OutputFormat, ShardSink, StreamSink
from facescope.inference.sources import VIDEO_KINDS, Inputs, Kind, classify


@dataclass(frozen=True)
class PredictorSpec:
    """What predicts, as options: each engine makes its Predictor from them where it runs it (once in
    this process; once per Ray worker process)."""

    model: str | None = None  # an installed model's name or a bundle folder; None: the bundled model
    batch_size: int = 32  # faces per network batch
    aligned: bool = False  # each image is one aligned face crop (no detection)
    detection: dict[str, Any] = field(default_factory=dict)  # options given (facescope.faces.options)
    workers: int = 1  # the Ray engine: network actors
    # --threshold's items as given: the confidence below which a head answers "uncertain"
    # (facescope.heads.parse_thresholds), given to the predictor's prediction call wherever it runs; None:
    # none asked for, so the defaults (DEFAULT_THRESHOLDS); ("none",): always answer. A video's tracks
    # answer from every frame's probabilities pooled: its engine refuses any.
    thresholds: tuple[str, ...] | None = None

    def answer_thresholds(self, heads: tuple[Head, ...]) -> dict[str, float]:
        """The thresholds each photo's answers are given under: those asked for, or the defaults. Checked
        against `heads`, those of the model the engine has loaded, so that its model.json is read once: an
        item naming a head the model lacks is --threshold's usage error."""
        import typer

        try:
            return parse_thresholds(self.thresholds, heads)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--threshold") from None

    def make(self, **arguments: Any):
        from facescope.inference.predictor import Predictor

        return Predictor(self.model, **{"batch_size": self.batch_size, **self.detection, **arguments})


class Engine(NamedTuple):
    target: str  # "module:function": its run(source, predictor, sink)
    summary: str  # its words in `--engine`'s help
    reads: frozenset[Kind]  # the kinds of input it reads
    sink: type  # StreamSink or ShardSink
    formats: tuple[OutputFormat, ...]
    usage: str  # said when the inputs, the format or the sink do not fit it
    most_inputs: int | None = None


PHOTO_FORMATS = (OutputFormat.jsonl, OutputFormat.json, OutputFormat.csv)
ENGINES: dict[str, Engine] = {
    "local": Engine("facescope.inference.local:run", "photos in this process, records on stdout as each is done",
                    frozenset({Kind.PHOTO, Kind.FOLDER, Kind.STDIN}), StreamSink, PHOTO_FORMATS,
                    "give photos, folders or - (a photo on stdin), or one video; --format parquet, --manifest and "
                    "--output are for --engine ray"),
    "video": Engine("facescope.inference.video:run", "a video file, stream or camera: faces tracked across frames",
                    VIDEO_KINDS, StreamSink, (OutputFormat.jsonl,),
                    "a video, stream or camera is read alone, with --format jsonl", most_inputs=1),
    "ray": Engine("facescope.batch:run", "a Ray Data pipeline writing shards to --output (pip install "
                  "'facescope[ray]'; joins RAY_ADDRESS when set)",
                  frozenset({Kind.PHOTO, Kind.FOLDER, Kind.URI, Kind.MANIFEST}), ShardSink,
                  (OutputFormat.jsonl, OutputFormat.parquet),
                  "--engine ray reads photos, folders, URIs and manifests and writes shards: give --output and "
                  "--format jsonl or parquet"),
}


def choose(name: str | None, source: Inputs, sink: StreamSink | ShardSink) -> str:
    """The engine for `source` and `sink`: `name`, or else the first in ENGINES that reads every input
    (ValueError with the engine's usage when they do not fit it)."""
    kinds = source.kinds
    if name is None:
        name = next((n for n, engine in ENGINES.items() if kinds <= engine.reads), None)
        if name is None:  # inputs no one engine reads together: the usage of the first one's engine
            first = {classify(source.arguments[0])}
            name = next(n for n, engine in ENGINES.items() if first <= engine.reads)
    engine = ENGINES[name]
    fits = (kinds and kinds <= engine.reads and isinstance(sink, engine.sink) and sink.format in engine.formats
            and (engine.most_inputs is None or len(source.arguments) <= engine.most_inputs))
    if not fits:
        raise ValueError(engine.usage)
    return name


def load(name: str) -> Callable[..., int]:
    """The engine's `run`, its module imported now."""
    module, _, function = ENGINES[name].target.partition(":")
    return getattr(importlib.import_module(module), function)
