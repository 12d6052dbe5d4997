"""`facescope predict` and the Python predictor on real crops, composed group photos and broken files."""

from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from facescope import labels
from facescope.cli import app
from facescope.faces import read_image
from facescope.bundles import read_bundle_info
from facescope.heads import DEFAULT_THRESHOLDS, UNCERTAIN
from tests.conftest import compose_canvas


def _check_face(face: dict, width: int, height: int, race_labels: tuple[str, ...]) -> None:
    assert set(face) == {"box", "score", "landmarks", "age", "gender", "race", "by_model"}
    assert face["by_model"] == {}  # one model: no further estimates
    x1, y1, x2, y2 = face["box"]
    assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    assert 0 < face["score"] <= 1
    assert len(face["landmarks"]) == 5 and all(len(p) == 2 for p in face["landmarks"])
    age = face["age"]
    assert set(age) - {"measured"} == {"years", "bin", "bin_probs", "years_std"}
    assert 0 <= age["years"] <= labels.MAX_AGE and age["years_std"] > 0
    assert list(age["bin_probs"]) == list(labels.AGE_BIN_LABELS)
    assert age["bin"] in (max(age["bin_probs"], key=age["bin_probs"].get), UNCERTAIN)
    assert (age["bin"] == UNCERTAIN) == (max(age["bin_probs"].values()) < DEFAULT_THRESHOLDS["age"])
    assert sum(age["bin_probs"].values()) == pytest.approx(1, abs=1e-3)
    # One decision: the years lie in the group, also as the page and annotated photos round them.
    assert labels.age_to_bin(age["years"]) == labels.age_to_bin(round(age["years"])) == age["bin"]
    for head, names in (("gender", labels.GENDERS), ("race", race_labels)):
        assert list(face[head]["probs"]) == list(names)
        assert sum(face[head]["probs"].values()) == pytest.approx(1, abs=1e-3)
        top = max(face[head]["probs"], key=face[head]["probs"].get)
        withheld = face[head]["probs"][top] < DEFAULT_THRESHOLDS[head]  # the CLI's default threshold
        assert face[head]["label"] == (UNCERTAIN if withheld else top)


@pytest.fixture()
def photo_folder(tmp_path, utkface_files):
    """Real photos with broken files mixed in: truncated, empty, and a text file beside them."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in utkface_files[:4]:
        shutil.copy(path, folder / path.name)
    (folder / "cut.jpg").write_bytes(utkface_files[5].read_bytes()[:1500])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("not a photo")
    Image.fromarray(compose_canvas(utkface_files[6:8], size=(520, 300))[0]).save(folder / "two.png")
    return folder


def test_jsonl_has_one_valid_object_per_file_and_names_every_broken_one(photo_folder, bundle_dir):
    outcome = CliRunner().invoke(app, ["predict", str(photo_folder), "--model", str(bundle_dir)])
    assert outcome.exit_code == 1  # some files could not be read
    lines = outcome.stdout.strip().splitlines()
    assert len(lines) == 7  # stdout carries the results and nothing else; notes.txt is passed over
    results = {json.loads(line)["path"].split("/")[-1]: json.loads(line) for line in lines}
    race_labels = read_bundle_info(bundle_dir).race_labels
    for name, result in results.items():
        assert set(result) == {"path", "model", "width", "height", "faces", "faces_found", "error"}
        assert result["faces_found"] == len(result["faces"])
        if name in ("cut.jpg", "empty.jpg"):
            assert result["error"] and result["faces"] == [] and name in result["error"]
            continue
        assert result["error"] is None
        assert len(result["faces"]) == (2 if name == "two.png" else 1), name
        for face in result["faces"]:
            _check_face(face, result["width"], result["height"], race_labels)
    assert "truncated" in results["cut.jpg"]["error"] and "empty file" in results["empty.jpg"]["error"]
    assert "7 files, 6 faces, 2 unreadable" in outcome.stderr and "passed over: 1 non-image files" in outcome.stderr


def test_a_text_file_in_a_folder_is_passed_over_and_counted_not_an_error(tmp_path, utkface_files, bundle_dir):
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in utkface_files[:2]:
        shutil.copy(path, folder / path.name)
    (folder / "notes.txt").write_text("not a photo")
    (folder / "README").write_text("no suffix")
    outcome = CliRunner().invoke(app, ["predict", str(folder), "--model", str(bundle_dir), "-f", "csv"])
    assert outcome.exit_code == 0, outcome.stderr
    assert [row["path"] for row in csv.DictReader(io.StringIO(outcome.stdout))] == \
        [str(folder / path.name) for path in utkface_files[:2]]
    assert "2 files, 2 faces, 0 unreadable" in outcome.stderr and "passed over: 2 non-image files" in outcome.stderr
    # Named on the command line, a text file is still read, and is its error record.
    named = CliRunner().invoke(app, ["predict", str(folder / "notes.txt"), "--model", str(bundle_dir)])
    assert named.exit_code == 1 and "notes.txt" in json.loads(named.stdout)["error"]


def test_all_good_files_exit_zero_csv_and_json_formats(utkface_files, bundle_dir):
    files = [str(p) for p in utkface_files[:3]]
    outcome = CliRunner().invoke(app, ["predict", *files, "--model", str(bundle_dir), "--format", "csv"])
    assert outcome.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(outcome.stdout)))
    assert [r["path"] for r in rows] == files and all(r["gender"] in labels.GENDERS for r in rows)
    outcome = CliRunner().invoke(app, ["predict", *files, "--model", str(bundle_dir), "--format", "json"])
    assert [r["path"] for r in json.loads(outcome.stdout)] == files


def test_aligned_mode_treats_each_image_as_one_face(utkface_files, bundle_dir, tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (127, 127, 127)).save(blank)  # no face to detect, but --aligned says there is
    outcome = CliRunner().invoke(app, ["predict", str(utkface_files[0]), str(blank), "--aligned", "--model", str(bundle_dir)])
    results = [json.loads(line) for line in outcome.stdout.splitlines()]
    assert [len(r["faces"]) for r in results] == [1, 1]
    assert results[0]["faces"][0]["box"] == [0.0, 0.0, 200.0, 200.0]


def test_annotate_writes_each_photo_with_boxes(photo_folder, bundle_dir, tmp_path):
    out = tmp_path / "annotated"
    CliRunner().invoke(app, ["predict", str(photo_folder / "two.png"), "--annotate", str(out), "--model", str(bundle_dir)])
    annotated = np.asarray(Image.open(out / "two.annotated.jpg"))
    original = read_image(photo_folder / "two.png")
    assert annotated.shape == original.shape
    assert np.abs(annotated.astype(int) - original).mean() > 1  # boxes and labels were drawn


def test_predictor_finds_every_pasted_face_and_batches_across_photos(predictor, utkface_files):
    canvas, boxes = compose_canvas(utkface_files[:3], size=(760, 320))
    faces = predictor.predict(canvas)
    assert len(faces) == 3
    for x1, y1, x2, y2 in boxes:
        assert any(f.box[0] < (x1 + x2) / 2 < f.box[2] and f.box[1] < (y1 + y2) / 2 < f.box[3] for f in faces)
    # The same faces one by one, and batched with other photos, give the same answers.
    singles = [predictor.predict(p)[0] for p in utkface_files[:3]]
    batched = [r.faces[0] for r in predictor.predict_images(utkface_files[:3])]
    for one, many in zip(singles, batched):
        assert one.gender.probs == pytest.approx(many.gender.probs, abs=1e-4)
        assert one.age.years == pytest.approx(many.age.years, abs=0.05)


def test_a_prediction_call_with_thresholds_withholds_low_confidence_answers_and_keeps_probabilities(
        predictor, utkface_files):
    """The thresholds are an argument of the prediction call (what the engines and the server pass): an
    answer less likely than its bar reads "uncertain" (an age's years go with its group), one at its bar
    is kept, every probability stays; every entry point answers alike, and without thresholds all answer."""
    photo, plain = next((p, r) for p in utkface_files for r in [predictor.predict_image(p)]
                        if r.faces and max(r.faces[0].gender.probs.values()) < 1)
    face = plain.faces[0]
    assert UNCERTAIN not in (face.gender.label, face.race.label, face.age.bin)
    gender_top, age_top = max(face.gender.probs.values()), max(face.age.bin_probs.values())
    bars = {"gender": (gender_top + 1) / 2, "race": max(face.race.probs.values()), "age": (age_top + 1) / 2}

    strict = predictor.predict_image(photo, thresholds=bars)
    answered = strict.faces[0]
    assert answered.gender.label == UNCERTAIN and answered.gender.probs == face.gender.probs
    assert answered.race.label == face.race.label and answered.race.probs == face.race.probs
    assert (answered.age.bin, answered.age.years, answered.age.years_std) == (UNCERTAIN, None, None)
    assert answered.age.bin_probs == face.age.bin_probs
    assert predictor.predict(photo, thresholds=bars) == strict.faces
    assert next(predictor.predict_images([photo], thresholds=bars)) == strict
    assert next(predictor.estimate_photos([predictor.prepare_photo(photo, strict.path)], bars)) == strict
    assert predictor.predict_image(photo, thresholds={}) == plain


def test_predictor_accepts_bytes_and_arrays_and_refuses_bad_arrays(predictor, utkface_files):
    from_bytes = predictor.predict(utkface_files[0].read_bytes())
    from_array = predictor.predict(read_image(utkface_files[0]))
    assert from_bytes[0].race.probs == pytest.approx(from_array[0].race.probs, abs=1e-4)
    with pytest.raises(ValueError, match="uint8"):
        predictor.predict(np.zeros((10, 10, 2), np.float32))


def test_prediction_path_imports_no_pytorch(bundle_dir, utkface_files):
    import subprocess
    import sys

    code = (
        "import sys\nfrom facescope.cli import app\nfrom facescope import Predictor\n"
        f"Predictor({str(bundle_dir)!r}).predict({str(utkface_files[0])!r})\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\nprint('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr


def test_csv_numbers_faces_from_1_as_the_annotated_photo_does(photo_folder, bundle_dir):
    photo = photo_folder / "two.png"
    as_csv = CliRunner().invoke(app, ["predict", str(photo), "--model", str(bundle_dir), "-f", "csv"])
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [row["face"] for row in rows] == ["1", "2"]
    as_json = json.loads(CliRunner().invoke(app, ["predict", str(photo), "--model", str(bundle_dir)]).stdout)
    # Face N of the CSV is the JSON's faces[N - 1], which the annotated photo draws with the number N.
    for row, face in zip(rows, as_json["faces"]):
        assert [float(row[k]) for k in ("x1", "y1", "x2", "y2")] == pytest.approx(face["box"])


def test_an_opencv_array_is_read_as_bgr_when_told(predictor, utkface_files):
    import cv2

    photo = utkface_files[4]
    from_file = predictor.predict(photo)[0]
    bgr = cv2.imread(str(photo))
    told = predictor.predict(bgr, channels="BGR")[0]
    assert told.race.probs == pytest.approx(from_file.race.probs, abs=1e-4)
    assert told.age.years == pytest.approx(from_file.age.years, abs=1e-3)
    # Without `channels`, an array is RGB: OpenCV's, read so, has red and blue swapped and answers otherwise.
    swapped = predictor.predict(bgr)[0]
    assert max(abs(swapped.race.probs[k] - from_file.race.probs[k]) for k in from_file.race.probs) > 1e-3


def test_age_years_and_group_are_one_decision_when_the_distribution_spans_groups():
    from types import SimpleNamespace

    from facescope.heads import Head
    from facescope.inference.predictor import estimates

    info = SimpleNamespace(heads=(Head("age", "age_years"),))

    def age_of(mass: dict[int, float]):
        probs = np.zeros(labels.MAX_AGE + 1)
        for year, p in mass.items():
            probs[year] = p
        return estimates(info, {"age": probs / probs.sum()}).age

    # The mean (38.5) is in 30-39, the most likely group 20-29: the years stay in the group, at its top.
    above = age_of({25: 0.4, 45: 0.3, 50: 0.3})
    assert above.bin == "20-29" and above.years == 29.49 and round(above.years) == 29
    # The mean (43.3) under the most likely group 50-59: its first year.
    below = age_of({55: 0.4, 30: 0.3, 41: 0.3})
    assert below.bin == "50-59" and below.years == 50
    assert below.years_std > 10  # the spread is the whole distribution's, still telling how unsure it is
    # A mean inside its most likely group is left as it is.
    assert age_of({33: 0.5, 35: 0.5}).years == 34
    rng = np.random.default_rng(0)
    for _ in range(500):
        probs = rng.dirichlet(np.full(labels.MAX_AGE + 1, 0.05))
        age = estimates(info, {"age": probs}).age
        assert labels.age_to_bin(age.years) == labels.age_to_bin(round(age.years)) == age.bin
        assert f"{age.years:.0f}" == str(round(age.years))
