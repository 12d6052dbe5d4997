"""The local engine: photos read, detected and estimated in this process, each record written to the
sink as soon as it is computed (facescope.engines; `facescope predict PHOTO...`).

Every path given or found gets exactly one record, in order: a run stopped half-way keeps every record
already written (in JSON, the document is closed on the way out). Exit status: 0 every file read, 1 some
could not be (each has its error record) or the output could not be written (a full disk), 2 an
--annotate folder that cannot be written, 3 an internal error (a bug: please report it); 128 + the
signal's number when stopped by SIGINT (Ctrl-C), SIGTERM or SIGHUP, after the JSON document is closed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING

import typer
from tqdm import tqdm

from facescope.inference.sinks import (OutputFormat, RecordWriter, StreamSink, Stopped, check_annotation_folder,
                                       describe_write_error, write_annotated_copy)
from facescope.inference.sources import Inputs, local_photos

if TYPE_CHECKING:
    from facescope.engines import PredictorSpec

EXIT_UNREADABLE = 1
EXIT_INTERNAL_ERROR = 3
# Signals that stop a run the way Ctrl-C does: what was written is kept and a JSON document closed.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def run(source: Inputs, predictor: PredictorSpec, sink: StreamSink) -> int:
    """Predicts every photo of `source` into `sink`; the closing summary on stderr; the exit status."""
    from facescope.faces.intake import display_name
    from facescope.inference.predictor import INTERNAL_ERROR

    annotate = sink.annotate
    if annotate is not None:
        try:
            check_annotation_folder(annotate)
        except ValueError as error:
            typer.echo(f"error: {error}", err=True)
            return 2
    model = predictor.make()
    thresholds = predictor.answer_thresholds(model.info.heads)
    sources, names, skipped = local_photos(source)
    try:
        writer = sink.open(model.info.heads)
    except OSError as error:  # not even the header could be written
        typer.echo(f"error: cannot write the results ({describe_write_error(error)})", err=True)
        return EXIT_UNREADABLE
    main_thread = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, writer.on_signal) for s in (signal.SIGINT, *STOP_SIGNALS)} if main_thread else {}
    results = model.predict_images(sources, aligned=predictor.aligned, names=names,
                                   thresholds=thresholds)
    progress = tqdm(zip(sources, results), total=len(sources), unit="img", desc="predicting", file=sys.stderr,
                    disable=len(sources) < 2)
    failed, internal, faces, annotated_names, kept = [], 0, 0, set(), 0
    try:
        for photo, result in progress:
            faces += len(result.faces)
            if result.error:
                failed.append(result.error)
                internal += result.error.startswith(INTERNAL_ERROR)
            writer.write(result)
            if annotate is not None and not result.error:
                try:
                    target, how = write_annotated_copy(result, photo, annotate, annotated_names)
                    kept += how == "already there"
                    if how == "renamed":
                        typer.echo(f"{result.path}: annotated as {display_name(target)} (name taken)", err=True)
                except Exception as error:  # the results are written; one picture not drawn is an error
                    reason = describe_write_error(error) if isinstance(error, OSError) else error
                    failed.append(f"{result.path}: could not write its annotated copy ({reason})")
    except BrokenPipeError:  # the reader went away (`| head`): nothing more can be written
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_UNREADABLE if failed else 0
    except (Stopped, KeyboardInterrupt) as stop:
        signum = stop.signum if isinstance(stop, Stopped) else signal.SIGINT
        _close_quietly(writer)
        typer.echo(f"stopped by {signal.Signals(signum).name}: {writer.count} of {len(sources)} files written"
                   + (" (the JSON document is closed)" if sink.format is OutputFormat.json else ""), err=True)
        return 128 + signum
    except OSError as error:  # the results could not be written: a full disk, a failing device
        with contextlib.suppress(OSError):
            writer.close()
        typer.echo(f"error: cannot write the results ({describe_write_error(error)}): stopped after {writer.count} "
                   f"of {len(sources)} files", err=True)
        return EXIT_UNREADABLE
    except Exception as error:
        _close_quietly(writer)
        typer.echo(f"internal error after {writer.count} of {len(sources)} files: {type(error).__name__}: {error}",
                   err=True)
        return EXIT_INTERNAL_ERROR
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    written = _close_quietly(writer)
    typer.echo(f"{len(sources)} files, {faces} faces, {len(failed)} unreadable", err=True)
    if kept:
        typer.echo(f"{kept} annotated copies were already there, the same as this run's: kept", err=True)
    passed_over = ", ".join(f"{count} {kind}" for kind, count in skipped.items() if count)
    if passed_over:
        typer.echo(f"passed over: {passed_over}" + (" (use --recursive)" if skipped["sub-folders"] else ""),
                   err=True)
    for error in failed:
        typer.echo(f"  error: {error}", err=True)
    return EXIT_INTERNAL_ERROR if internal else EXIT_UNREADABLE if failed or not written else 0


def _close_quietly(writer: RecordWriter) -> bool:
    """Ends the document; when the output itself cannot be written (a full disk), says so (False)."""
    try:
        writer.close()
    except OSError as error:
        typer.echo(f"error: cannot write the results ({describe_write_error(error)})", err=True)
        return False
    return True
