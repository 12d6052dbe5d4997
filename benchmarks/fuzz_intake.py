"""Fuzzing the intake and detection with mutated image bytes (hypothesis), bounded in count and time.

    FACESCOPE_DATA=../shared/data python benchmarks/fuzz_intake.py --count 3000 --seconds 600

Seeds: a real UTKFace crop and small generated images, in every format Pillow reads that facescope meets
(JPEG, PNG, GIF, TIFF, WebP, BMP, ICO), several frames and modes; hypothesis then flips, inserts, deletes,
duplicates and truncates their bytes. Each input goes through read_photo and FaceDetector.detect, three
ways: as bytes, as a strided (non-contiguous) memoryview of the same bytes, which must give the same
outcome, and as a file under a generated name (NUL bytes, slashes, names longer than the file system
allows, names that are not UTF-8 included; a name the system refuses is still passed to read_photo). The
only exception allowed is the intake's ImageReadError. Prints how many inputs were tried, how many were
read, how many refused, and every input that raised anything else (saved under --failures for replay).
Not run in CI: it takes minutes.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from facescope.faces import FaceDetector, ImageReadError, read_photo
from facescope.paths import data_root

DATA = data_root() / "utkface"


def seeds() -> list[bytes]:
    face = Image.open(sorted(DATA.iterdir())[0]).convert("RGB") if DATA.is_dir() else Image.new("RGB", (64, 64))
    small = face.resize((48, 48))
    out = []
    for image, format, options in [
        (small, "JPEG", {"quality": 80}), (small, "JPEG", {"progressive": True}), (small, "PNG", {}),
        (small.convert("P"), "PNG", {"transparency": 0}), (small.convert("L"), "PNG", {}),
        (Image.fromarray(np.arange(48 * 48, dtype=np.uint16).reshape(48, 48)), "PNG", {}),
        (small, "GIF", {"save_all": True, "append_images": [small.rotate(90)]}),
        (small, "TIFF", {"save_all": True, "append_images": [small.convert("L")]}),
        (small.convert("CMYK"), "TIFF", {}), (small, "WEBP", {"quality": 70}), (small, "BMP", {}),
        (small, "ICO", {}),
    ]:
        buffer = io.BytesIO()
        image.save(buffer, format=format, **options)
        out.append(buffer.getvalue())
    return out


SEEDS = seeds()
mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 64)),
    st.tuples(st.just("duplicate"), st.integers(0, 10**6), st.integers(1, 256)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
    # Header fields (sizes, counts, offsets) live in the first bytes: big values there.
    st.tuples(st.just("big"), st.integers(0, 64), st.sampled_from([b"\xff\xff", b"\x7f\xff\xff\xff", b"\0\0"])),
)


# File names: any bytes but "/" (so every file stays inside the fuzzing folder), and the hard cases.
file_names = st.one_of(st.binary(min_size=1, max_size=300).map(lambda n: n.replace(b"/", b"_"))
                       .filter(lambda n: n not in (b".", b"..")),
                       st.just(b"x" * 300), st.just(b"a\0b.jpg"), st.just(b"no/such/folder.jpg"))


def mutate(data: bytes, mutations) -> bytes:
    buffer = bytearray(data)
    for kind, position, value in mutations:
        at = position % (len(buffer) + 1)
        if kind == "flip" and buffer:
            buffer[at % len(buffer)] = value
        elif kind == "insert":
            buffer[at:at] = value
        elif kind == "delete":
            del buffer[at:at + value]
        elif kind == "duplicate":
            buffer[at:at] = buffer[at:at + value]
        elif kind == "truncate":
            del buffer[at:]
        elif kind == "big":
            buffer[at:at + len(value)] = value
    return bytes(buffer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=3000, help="most inputs to try")
    parser.add_argument("--seconds", type=float, default=600, help="stop generating after this long")
    parser.add_argument("--failures", type=Path, default=Path("reports/fuzz-failures"))
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)  # Pillow's notes on corrupt data: the point of the run
    detector = FaceDetector(threads=1)
    tally: Counter = Counter()
    failures: list[tuple[bytes, str]] = []
    start = time.monotonic()

    @settings(max_examples=args.count, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(seed=st.sampled_from(range(len(SEEDS))), mutations=st.lists(mutation, min_size=1, max_size=6),
           name=file_names)
    def one_input(seed, mutations, name):
        if time.monotonic() - start > args.seconds:
            return
        data = mutate(SEEDS[seed], mutations)
        tally["tried"] += 1
        try:
            photo = read_photo(data)
            detector.detect(photo.pixels)
            tally["read"] += 1
            read = True
        except ImageReadError:
            tally["refused"] += 1
            read = False
        except Exception:
            failures.append((data, traceback.format_exc()))
            return
        try:
            strided = memoryview(bytes(b for byte in data for b in (byte, 0)))[::2]
            if outcome(strided) != read:
                failures.append((data, "a strided memoryview of the bytes gave another outcome"))
            path = folder + "/" + os.fsdecode(name)
            try:
                with open(path, "wb") as file:
                    file.write(data)
            except (OSError, ValueError):  # a name the system refuses: read_photo must say so too
                pass
            outcome(path)
        except Exception:
            failures.append((data, f"name {name!r}:\n{traceback.format_exc()}"))

    def outcome(source) -> bool:
        try:
            read_photo(source)
            return True
        except ImageReadError:
            return False

    folder = tempfile.mkdtemp(prefix="facescope-fuzz-")
    try:
        one_input()
    finally:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    seconds = time.monotonic() - start
    print(f"{tally['tried']} mutated inputs in {seconds:.0f} s (from {len(SEEDS)} seeds): {tally['read']} read, "
          f"{tally['refused']} refused with ImageReadError, {len(failures)} raised anything else")
    if failures:
        args.failures.mkdir(parents=True, exist_ok=True)
        for data, trace in failures:
            digest = hashlib.sha1(data).hexdigest()[:12]
            (args.failures / f"{digest}.bin").write_bytes(data)
            print(f"--- {digest}.bin\n{trace}")
        sys.exit(1)


if __name__ == "__main__":
    main()
