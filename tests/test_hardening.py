"""Hardening: what people pass to the Python API, degenerate shapes, the pixel limit, multi-frame files,
the detection knobs (with the recall they fix on a group photo), the CLI's outcomes and exit codes,
and no file written outside what was asked for."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from facescope.cli import app
from facescope.faces import ImageReadError, read_photo
from facescope.faces.intake import MAX_PIXELS, WORKING_SIDE
from tests.conftest import GROUP_CROP_SIDES, compose_group_photo, face_recall

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def face_rgb(utkface_files) -> np.ndarray:
    return np.asarray(Image.open(utkface_files[0]).convert("RGB"))


@pytest.fixture(scope="module")
def group_photo(utkface_files):
    return compose_group_photo(utkface_files[10:10 + len(GROUP_CROP_SIDES) + 1])


# --- the Python API takes what people have ---

def test_every_accepted_input_type_gives_the_same_faces(predictor, utkface_files, face_rgb):
    path = utkface_files[0]
    reference = predictor.predict(path)[0]
    image = Image.open(path)
    as_float = face_rgb.astype(np.float32)
    for source in (str(path), path.read_bytes(), bytearray(path.read_bytes()), memoryview(path.read_bytes()),
                   io.BytesIO(path.read_bytes()), image, face_rgb, as_float, as_float / 255.0,
                   np.dstack([face_rgb, np.full(face_rgb.shape[:2], 255, np.uint8)])):
        face = predictor.predict(source)[0]
        assert face.gender.probs == pytest.approx(reference.gender.probs, abs=0.02), type(source)
        assert face.age.years == pytest.approx(reference.age.years, abs=1.0), type(source)


def test_bgr_arrays_are_read_with_channels_bgr(predictor, face_rgb):
    rgb = predictor.predict(face_rgb)[0]
    bgr = np.ascontiguousarray(face_rgb[:, :, ::-1])
    assert predictor.predict(bgr, channels="BGR")[0].race.probs == pytest.approx(rgb.race.probs, abs=1e-4)
    assert predictor.predict(bgr)[0].race.probs != pytest.approx(rgb.race.probs, abs=1e-4)  # why it matters
    with pytest.raises(ValueError, match="RGB"):
        predictor.predict(face_rgb, channels="RBG")


def test_grey_arrays_and_images_are_read(predictor, face_rgb):
    grey = np.asarray(Image.fromarray(face_rgb).convert("L"))
    for source in (grey, grey[:, :, None], Image.fromarray(grey)):
        assert len(predictor.predict(source)) == 1


def test_anything_else_is_a_type_error_naming_what_is_accepted(predictor, face_rgb):
    for wrong in (face_rgb.tolist(), 42, None, io.StringIO("text")):
        with pytest.raises(TypeError, match="PIL image|binary mode"):
            predictor.predict(wrong)


@pytest.mark.parametrize("shape", [(0, 0, 3), (0, 10, 3), (10, 0), (1, 800, 3), (800, 1, 3), (1, 65535, 3),
                                   (5, 4000, 3), (1, 1, 3), (2, 3)])
def test_degenerate_shapes_give_no_face_or_a_read_error_never_a_crash(predictor, shape):
    array = np.zeros(shape, np.uint8)
    if array.size == 0:
        with pytest.raises(ImageReadError, match="no pixels"):
            predictor.predict(array)
    else:
        assert predictor.predict(array) == []


def test_float_arrays_must_be_finite_and_integers_in_range(predictor):
    with pytest.raises(ImageReadError, match="NaN"):
        predictor.predict(np.full((20, 20, 3), np.nan))
    with pytest.raises(ImageReadError, match="0..255"):
        predictor.predict(np.full((20, 20, 3), 1000, np.uint16))


# --- one pixel limit; large photos decoded reduced; frames ---

def test_one_pixel_limit_is_pillows_too():
    assert Image.MAX_IMAGE_PIXELS == MAX_PIXELS


def test_a_large_jpeg_is_decoded_reduced_and_reported_at_its_own_size():
    big = Image.new("RGB", (9000, 6000), (120, 130, 140))
    buffer = io.BytesIO()
    big.save(buffer, format="JPEG", quality=80)
    photo = read_photo(buffer.getvalue())
    assert (photo.width, photo.height) == (9000, 6000)
    assert max(photo.pixels.shape[:2]) <= WORKING_SIDE
    assert photo.scale == pytest.approx((9000 / photo.pixels.shape[1], 6000 / photo.pixels.shape[0]))


def test_boxes_of_a_photo_decoded_reduced_are_in_its_own_pixels(predictor, utkface_files):
    face = Image.open(utkface_files[3]).convert("RGB").resize((1200, 1200))
    canvas = Image.new("RGB", (6000, 3000), (128, 128, 128))
    canvas.paste(face, (3000, 1000))
    buffer = io.BytesIO()
    canvas.save(buffer, format="JPEG", quality=90)
    result = predictor.predict_image(buffer.getvalue())
    assert (result.width, result.height) == (6000, 3000) and result.faces_found == 1
    x1, y1, x2, y2 = result.faces[0].box
    assert 3000 <= (x1 + x2) / 2 <= 4200 and 1000 <= (y1 + y2) / 2 <= 2200 and x2 - x1 > 500


def test_a_multi_frame_file_says_how_many_frames_it_has(predictor, utkface_files):
    first = Image.open(utkface_files[0]).convert("RGB")
    buffer = io.BytesIO()
    first.save(buffer, format="GIF", save_all=True, append_images=[Image.new("RGB", first.size, (v, v, v)) for v in (0, 255)])
    result = predictor.predict_image(buffer.getvalue())
    assert result.frames == 3 and result.faces_found == 1  # the first frame, with the face, was analysed
    assert "frames" not in json.loads(predictor.predict_image(utkface_files[0]).model_dump_json())


# --- detection knobs and the recall they fix ---

def test_group_photo_recall_with_the_default_detection(predictor, group_photo):
    image, boxes = group_photo
    result = predictor.predict_image(image)
    assert all(face_recall(result.faces, boxes)), face_recall(result.faces, boxes)  # 40 to 400 px, one turned
    assert result.faces_found == len(result.faces) == len(boxes)


def test_knobs_change_what_is_found_and_shown(predictor, group_photo):
    image, boxes = group_photo
    coarse = predictor.predict_image(image, detection_size=320)
    assert coarse.faces_found < len(boxes)  # the smallest faces need the larger detection size
    strict = predictor.predict_image(image, min_face_size=150)
    assert 0 < strict.faces_found < len(boxes) and all(f.box[2] - f.box[0] >= 150 for f in strict.faces)
    capped = predictor.predict_image(image, max_faces=2)
    assert capped.faces_found == len(boxes) and len(capped.faces) == 2
    assert predictor.predict_image(image, score_threshold=0.9999).faces_found < len(boxes)
    with pytest.raises(ValueError, match="score_threshold"):
        predictor.predict_image(image, score_threshold=2)
    with pytest.raises(TypeError, match="unknown detection option"):
        predictor.predict_image(image, threshold=0.5)


def test_knobs_in_the_cli(tmp_path, bundle_dir, group_photo):
    path = tmp_path / "group.png"
    Image.fromarray(group_photo[0]).save(path)
    outcome = CliRunner().invoke(app, ["predict", str(path), "--model", str(bundle_dir), "--max-faces", "2",
                                       "--min-face-size", "30", "--score-threshold", "0.6", "--detection-size", "1280"])
    result = json.loads(outcome.stdout)
    assert outcome.exit_code == 0 and result["faces_found"] == len(group_photo[1]) and len(result["faces"]) == 2


# --- the CLI: outcomes, exit codes, streaming, annotation names, standard input ---

def test_an_internal_error_on_one_photo_is_its_record_and_exit_3(monkeypatch, utkface_files, bundle_dir, tmp_path):
    from facescope.inference.predictor import Predictor

    locate = Predictor._locate

    def broken_on_the_second(self, photo, aligned, detection):
        if photo.pixels.shape[0] == 201:
            raise RuntimeError("simulated bug")
        return locate(self, photo, aligned, detection)

    monkeypatch.setattr(Predictor, "_locate", broken_on_the_second)
    odd = tmp_path / "odd.png"
    Image.open(utkface_files[1]).resize((200, 201)).save(odd)
    files = [str(utkface_files[0]), str(odd), str(utkface_files[2])]
    outcome = CliRunner().invoke(app, ["predict", *files, "--model", str(bundle_dir), "-f", "json"])
    assert outcome.exit_code == 3
    records = json.loads(outcome.stdout)  # still one valid document, every file in it
    assert [r["path"] for r in records] == files
    assert records[1]["error"].startswith("internal error") and "simulated bug" in records[1]["error"]
    assert len(records[0]["faces"]) == len(records[2]["faces"]) == 1


def test_usage_errors_exit_2(bundle_dir, utkface_files):
    outcome = CliRunner().invoke(app, ["predict", str(utkface_files[0]), "--score-threshold", "3"])
    assert outcome.exit_code == 2


def test_annotate_never_overwrites(tmp_path, utkface_files, bundle_dir):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "face.jpg").write_bytes(utkface_files[0].read_bytes())
    Image.open(utkface_files[0]).save(tmp_path / "a" / "face.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "face.annotated.jpg").write_bytes(b"mine")  # already there: must survive
    paths = [str(tmp_path / "a" / "face.jpg"), str(tmp_path / "b" / "face.jpg"), str(tmp_path / "a" / "face.png")]
    outcome = CliRunner().invoke(app, ["predict", *paths, "--annotate", str(out), "--model", str(bundle_dir)])
    assert outcome.exit_code == 0
    assert (out / "face.annotated.jpg").read_bytes() == b"mine"
    assert sorted(p.name for p in out.iterdir()) == [
        "face.annotated-2.jpg", "face.annotated-3.jpg", "face.annotated-4.jpg", "face.annotated.jpg"]
    assert "annotated as" in outcome.stderr


def test_a_dash_reads_one_photo_from_standard_input(utkface_files, bundle_dir):
    outcome = CliRunner().invoke(app, ["predict", "-", "--model", str(bundle_dir)], input=utkface_files[0].read_bytes())
    result = json.loads(outcome.stdout)
    assert result["path"] == "<stdin>" and len(result["faces"]) == 1 and outcome.exit_code == 0


def test_sub_folders_are_counted_and_searched_with_recursive(tmp_path, utkface_files, bundle_dir):
    (tmp_path / "inner").mkdir()
    (tmp_path / "inner" / "face.jpg").write_bytes(utkface_files[0].read_bytes())
    (tmp_path / ".hidden.jpg").write_bytes(b"x")
    flat = CliRunner().invoke(app, ["predict", str(tmp_path), "--model", str(bundle_dir)])
    assert flat.stdout == "" and "1 hidden, 1 sub-folders" in flat.stderr and "--recursive" in flat.stderr
    (tmp_path / "inner" / "back-up").symlink_to(tmp_path)  # a loop through a link: searched once
    deep = CliRunner().invoke(app, ["predict", str(tmp_path), "-r", "--model", str(bundle_dir)])
    assert len(deep.stdout.splitlines()) == 1 and deep.exit_code == 0


# --- nothing written outside what was asked for ---

def test_a_predict_run_writes_only_its_outputs(tmp_path, utkface_files, bundle_dir):
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"),
           "FACESCOPE_CACHE": str(tmp_path / "cache"), "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": str(REPO / "src")}
    env.pop("ORT_DISABLE_TELEMETRY", None)  # facescope itself must turn it off
    code = "import sys; from facescope.cli import main; sys.argv[0] = 'facescope'; main()"
    run = subprocess.run([sys.executable, "-c", code, "predict", str(utkface_files[0]), "--model", str(bundle_dir),
                          "--annotate", "out"], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if not p.is_dir())
    assert written == [f"work/out/{utkface_files[0].name.removesuffix('.jpg')}.annotated.jpg"]


def test_an_unreadable_file_given_by_name_is_one_error_record(tmp_path, utkface_files, bundle_dir):
    import shutil

    locked = tmp_path / "locked.jpg"
    shutil.copy(utkface_files[0], locked)
    locked.chmod(0)
    prefix = []
    if os.geteuid() == 0:  # root reads anything: drop the capabilities that let it
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv")
        drop = "-dac_override,-dac_read_search"
        prefix = ["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}"]
    code = "import sys; from facescope.cli import main; sys.argv[0] = 'facescope'; main()"
    run = subprocess.run([*prefix, sys.executable, "-c", code, "predict", str(locked), str(utkface_files[1]),
                          "--model", str(bundle_dir)], env={**os.environ, "PYTHONPATH": str(REPO / "src")},
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 1, run.stderr  # one unreadable file, not a refused run
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert "permission denied" in records[0]["error"] and len(records[1]["faces"]) == 1


# --- the edges of the file system, the clock and the disk ---

CLI = "import sys; from facescope.cli import main; sys.argv[0] = 'facescope'; main()"


def without_root_powers() -> list[str]:
    """A command prefix that runs as root would without the powers to read or search anything."""
    import shutil

    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv")
    drop = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}"]


def run_cli(*args, prefix=(), timeout=600, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-c", CLI, *map(str, args)], stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})


def test_unsearchable_folders_and_overlong_names_are_one_record_each(tmp_path, utkface_files, bundle_dir):
    import shutil

    locked = tmp_path / "locked"
    locked.mkdir()
    shutil.copy(utkface_files[0], locked / "inside.jpg")
    locked.chmod(0o600)  # readable, not searchable
    overlong = tmp_path / ("x" * 300 + ".jpg")
    run = run_cli("predict", locked / "inside.jpg", locked, overlong, utkface_files[1], "--model", bundle_dir,
                  prefix=without_root_powers())
    assert run.returncode == 1, run.stderr
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(records) == 4 and "Traceback" not in run.stderr
    assert "permission denied" in records[0]["error"] and "permission denied" in records[1]["error"]
    assert "longer than the file system allows" in records[2]["error"]
    assert len(records[3]["faces"]) == 1


def test_annotate_into_what_cannot_be_a_folder_is_one_line(tmp_path, utkface_files, bundle_dir):
    taken = tmp_path / "taken.jpg"
    taken.write_bytes(b"mine")
    for target, words in [(taken, "is a file, not a folder"), (taken / "out", "a part of the path is a file")]:
        outcome = CliRunner().invoke(app, ["predict", str(utkface_files[0]), "--annotate", str(target),
                                           "--model", str(bundle_dir)])
        assert outcome.exit_code == 2 and words in outcome.stderr, outcome.stderr
        assert outcome.stdout == "" and outcome.exception is None or isinstance(outcome.exception, SystemExit)
    assert taken.read_bytes() == b"mine"
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    run = run_cli("predict", utkface_files[0], "--annotate", readonly, "--model", bundle_dir,
                  prefix=without_root_powers())
    assert run.returncode == 2 and "cannot write into the folder (Permission denied)" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_stop_signal_during_json_closes_the_document(stop, utkface_dir, bundle_dir, tmp_path):
    import signal

    photos = sorted(utkface_dir.iterdir())[:400]
    with open(tmp_path / "stderr", "w") as stderr:
        process = subprocess.Popen([sys.executable, "-c", CLI, "predict", *map(str, photos), "-f", "json",
                                    "--model", str(bundle_dir)], stdout=subprocess.PIPE, stderr=stderr, text=True,
                                   env={**os.environ, "PYTHONPATH": str(REPO / "src")})
        first = process.stdout.readline() + process.stdout.readline()  # "[" and the first record's opening
        process.send_signal(getattr(signal, stop))
        rest = process.stdout.read()
        process.wait(timeout=300)
    errors = (tmp_path / "stderr").read_text()
    records = json.loads(first + rest)
    assert 0 < len(records) < len(photos)
    assert process.returncode == 128 + getattr(signal, stop)
    assert f"stopped by {stop}: {len(records)} of {len(photos)} files written" in errors, errors[-500:]


def test_annotated_copies_are_written_whole_and_a_rerun_adds_none(tmp_path, utkface_files, bundle_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".facescope-partial-999999999-left.jpg").write_bytes(b"half")  # left by a run killed with -9
    photos = [str(p) for p in utkface_files[:3]]
    for _ in range(2):
        outcome = CliRunner().invoke(app, ["predict", *photos, "--annotate", str(out), "--model", str(bundle_dir)])
        assert outcome.exit_code == 0, outcome.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{Path(p).stem}.annotated.jpg" for p in photos)  # no -2 copies, no partial file
    assert "3 annotated copies were already there" in outcome.stderr
    for name in names:
        Image.open(out / name).load()  # whole JPEGs


def test_a_full_disk_is_said_as_such(tmp_path, utkface_files, bundle_dir, monkeypatch):
    import errno

    with open("/dev/full", "w") as full:  # every write fails with ENOSPC, as on a full disk
        run = run_cli("predict", utkface_files[0], utkface_files[1], "--model", bundle_dir, stdout=full)
    assert run.returncode == 1 and "no space left on device" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and "internal error" not in run.stderr

    def no_space(*_):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "link", no_space)
    out = tmp_path / "out"
    outcome = CliRunner().invoke(app, ["predict", str(utkface_files[0]), "--annotate", str(out), "--model",
                                       str(bundle_dir)])
    assert outcome.exit_code == 1 and "could not write its annotated copy (no space left on device)" in outcome.stderr
    assert json.loads(outcome.stdout)["faces"] and list(out.iterdir()) == []  # no partial file left


def test_records_come_out_one_photo_at_a_time(bundle_dir, utkface_files):
    from facescope.inference.predictor import Predictor

    class Counting(Predictor):
        prepared = 0

        def prepare_photo(self, *args, **kwargs):
            result = super().prepare_photo(*args, **kwargs)
            type(self).prepared += 1
            return result

    predictor = Counting(bundle_dir, workers=2, batch_size=32)
    photos = [utkface_files[i % len(utkface_files)] for i in range(40)]  # one face each
    seen_at_first_record = None
    for result in predictor.predict_images(photos):
        seen_at_first_record = Counting.prepared if seen_at_first_record is None else seen_at_first_record
    assert seen_at_first_record < 32  # not held until a batch of 32 faces is full


def test_strided_or_released_memoryviews_and_nul_paths_are_read_errors(utkface_files):
    data = utkface_files[0].read_bytes()
    doubled = bytes(b for byte in data for b in (byte, 0))
    assert read_photo(memoryview(doubled)[::2]).width == read_photo(data).width  # the same bytes, strided
    released = memoryview(data)
    released.release()
    with pytest.raises(ImageReadError, match="memoryview"):
        read_photo(released)
    with pytest.raises(ImageReadError, match="NUL byte"):
        read_photo("photo\0.jpg")


def test_pillow_warnings_name_the_file(tmp_path):
    image = Image.new("RGB", (40, 30))
    exif = image.getexif()
    exif[0x010F] = "maker"
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif.tobytes())
    data = bytearray(buffer.getvalue())
    at = data.find(b"Exif")
    data[at + 10:at + 14] = b"\xff\xff\xff\xff"  # a broken IFD offset: Pillow warns "Corrupt EXIF data"
    for name in ("first.jpg", "second.jpg"):
        (tmp_path / name).write_bytes(bytes(data))
    code = ("import sys; from facescope.faces import read_photo\n"
            "for name in sys.argv[1:]: read_photo(name)")
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "first.jpg"), str(tmp_path / "second.jpg")],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert run.returncode == 0, run.stderr
    assert f"{tmp_path / 'first.jpg'}: Corrupt EXIF" in run.stderr and f"{tmp_path / 'second.jpg'}: Corrupt" in run.stderr
