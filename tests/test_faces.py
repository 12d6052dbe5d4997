"""Image intake, detection and alignment on real UTKFace crops and generated images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from facescope.faces import CANONICAL, FaceDetector, ImageReadError, align_face, read_image

TEMPLATE = CANONICAL.points
from facescope.faces.align import alignment_matrix
from tests.conftest import compose_canvas


@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


def _encode(image: Image.Image, format: str, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **kw)
    return buffer.getvalue()


# --- intake: every mode a collection brings, and every way a file can be broken ---

def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 10, 20))  # blue stripe on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    rgb = read_image(_encode(image, "JPEG", exif=exif, quality=95))
    assert rgb.shape == (40, 20, 3)  # upright: portrait now
    assert rgb[2, 10, 2] > 200 and rgb[-3, 10, 0] > 200  # the blue stripe went to the top


@pytest.mark.parametrize(
    "mode, value",
    [("L", 90), ("LA", (90, 255)), ("RGBA", (10, 200, 30, 255)), ("CMYK", (0, 255, 255, 0)), ("P", None),
     ("I;16", 40000), ("1", 1)],
)
def test_every_mode_becomes_rgb_uint8(mode, value):
    image = Image.new(mode, (16, 12), value) if value is not None else Image.new("RGB", (16, 12), (9, 99, 199)).quantize(8)
    rgb = read_image(_encode(image, "TIFF" if mode in ("I;16", "CMYK") else "PNG"))
    assert rgb.shape == (12, 16, 3) and rgb.dtype == np.uint8
    if mode == "RGBA":
        assert tuple(rgb[0, 0]) == (10, 200, 30)
    if mode == "CMYK":
        assert rgb[0, 0, 0] > 200 and rgb[0, 0, 1] < 50  # cyan-free, magenta+yellow: red


def test_transparent_pixels_become_white():
    rgb = read_image(_encode(Image.new("RGBA", (8, 8), (0, 0, 0, 0)), "PNG"))
    assert (rgb == 255).all()


def test_sixteen_bit_range_is_scaled_not_clipped():
    grey = np.array([[1000, 2000], [3000, 4000]], dtype=np.uint16)
    rgb = read_image(_encode(Image.fromarray(grey), "PNG"))
    assert rgb[0, 0, 0] == 0 and rgb[1, 1, 0] == 255 and 0 < rgb[0, 1, 0] < rgb[1, 0, 0] < 255


def test_decompression_bomb_is_refused_before_decoding():
    bomb = _encode(Image.new("1", (5000, 5000)), "PNG")  # small file, 25 Mpx
    assert len(bomb) < 100_000
    with pytest.raises(ImageReadError, match="decompression bomb"):
        read_image(bomb, max_pixels=10_000_000)


def test_broken_files_give_clear_errors(tmp_path, utkface_files):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(utkface_files[0].read_bytes()[:2000])
    for path, message in [(empty, "empty file"), (text, "not an image"), (truncated, "truncated"),
                          (tmp_path / "missing.jpg", "no such file"), (tmp_path, "folder")]:
        with pytest.raises(ImageReadError, match=message):
            read_image(path)


# --- detection and alignment on real faces ---

def test_one_face_per_real_crop_with_landmarks_in_place(detector, utkface_files):
    for path in utkface_files:
        faces = detector.detect(read_image(path))
        assert len(faces) >= 1, path.name
        face = faces[0]
        x1, y1, x2, y2 = face.box
        assert 0 <= x1 < x2 <= 200 and 0 <= y1 < y2 <= 200 and face.score > 0.8
        assert (x2 - x1) > 60, "the face fills much of a UTKFace crop"
        eyes, nose, mouth = face.landmarks[:2], face.landmarks[2], face.landmarks[3:]
        assert eyes[0][0] < eyes[1][0] and mouth[0][0] < mouth[1][0]  # left before right
        assert eyes[:, 1].max() < nose[1] < mouth[:, 1].min()  # eyes above nose above mouth
        assert (face.landmarks >= [x1 - 5, y1 - 5]).all() and (face.landmarks <= [x2 + 5, y2 + 5]).all()


def test_no_face_in_a_blank_image(detector):
    assert detector.detect(np.full((300, 300, 3), 127, np.uint8)) == []


def test_several_faces_are_all_found_largest_first(detector, utkface_files):
    canvas, boxes = compose_canvas(utkface_files[:3], size=(760, 320))
    faces = detector.detect(canvas)
    assert len(faces) == 3
    for expected in boxes:
        centre = ((expected[0] + expected[2]) / 2, (expected[1] + expected[3]) / 2)
        assert any(f.box[0] < centre[0] < f.box[2] and f.box[1] < centre[1] < f.box[3] for f in faces)
    assert [f.area for f in faces] == sorted((f.area for f in faces), reverse=True)


def test_large_photos_are_detected_downscaled_and_mapped_back(utkface_files):
    crop = read_image(utkface_files[1])
    big = np.asarray(Image.fromarray(crop).resize((1600, 1600)))
    small_faces = FaceDetector().detect(crop)
    big_faces = FaceDetector(max_side=640).detect(big)
    assert len(big_faces) == 1
    # The same face, within 5% of the crop: detection at another scale moves boxes a little.
    np.testing.assert_allclose(np.array(big_faces[0].box) / 8, small_faces[0].box, atol=10)


def test_alignment_puts_landmarks_on_the_template(detector, utkface_files):
    image = read_image(utkface_files[2])
    landmarks = detector.detect(image)[0].landmarks
    matrix = alignment_matrix(landmarks)
    moved = landmarks @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(moved - TEMPLATE).mean() < 6
    crop = align_face(image, landmarks, 112)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    # Detecting again in the aligned crop finds the eyes where the template says.
    again = detector.detect(np.asarray(Image.fromarray(crop).resize((200, 200))))[0].landmarks
    assert np.abs(again[:2] - TEMPLATE[:2]).max() < 10


def test_alignment_undoes_a_rotation(detector, utkface_files):
    image = Image.open(utkface_files[3]).convert("RGB")
    rotated = np.asarray(image.rotate(25, resample=Image.BILINEAR, fillcolor=(128, 128, 128), expand=True))
    faces = detector.detect(rotated)
    assert faces
    crop = align_face(rotated, faces[0].landmarks, 200)
    eyes = detector.detect(crop)[0].landmarks[:2]
    assert abs(eyes[0][1] - eyes[1][1]) < 8  # eyes level again


def test_a_close_up_face_larger_than_the_anchors_is_found(detector, utkface_files):
    crop = read_image(utkface_files[4])
    close_up = np.asarray(Image.fromarray(crop).resize((1000, 1000)))  # a ~850 px face at detection size
    faces = detector.detect(close_up)
    assert len(faces) == 1 and faces[0].box[2] - faces[0].box[0] > 500
