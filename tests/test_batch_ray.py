"""`facescope predict --engine ray` on a local Ray instance (2 CPUs, loopback only): the same records as
the single-process CLI, file for file, broken files included. One Ray start for the whole module."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from facescope.cli import app
from facescope.heads import DEFAULT_THRESHOLDS, UNCERTAIN

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(utkface_files, tmp_path_factory):
    """Real crops (one face each), a photo with two faces, a folder's usual broken and empty files."""
    from tests.conftest import compose_canvas

    folder = tmp_path_factory.mktemp("photos")
    for path in utkface_files[:12]:
        shutil.copy(path, folder / path.name)
    canvas, _ = compose_canvas(utkface_files[12:14])
    Image.fromarray(canvas).save(folder / "two_faces.png")
    (folder / "notes.jpg").write_text("not an image")
    (folder / "empty.jpg").write_bytes(b"")
    return folder


@pytest.fixture(scope="module")
def cli_records(photos, bundle_dir):
    outcome = CliRunner().invoke(app, ["predict", str(photos), "--model", str(bundle_dir)])
    assert outcome.exit_code == 1  # two unreadable files
    return {r["path"]: r for r in map(json.loads, outcome.stdout.splitlines())}


def test_ray_records_are_the_clis(local_ray, photos, bundle_dir, cli_records, tmp_path):
    out = tmp_path / "shards"
    outcome = CliRunner().invoke(app, ["predict", str(photos), "--engine", "ray", "--output", str(out),
                                       "--workers", "1", "--model", str(bundle_dir)])
    assert outcome.exit_code == 1, outcome.output
    assert "15 files" in outcome.stderr and "2 unreadable" in outcome.stderr, outcome.stderr[-600:]
    shards = sorted(out.glob("*.jsonl"))
    assert shards
    records = [json.loads(line) for shard in shards for line in shard.read_text().splitlines()]
    assert len(records) == len(cli_records) == 15
    ray_records = {r["path"]: r for r in records}
    assert ray_records.keys() == cli_records.keys()
    for path, record in cli_records.items():
        assert ray_records[path] == record, path
    assert len(ray_records[str(photos / "two_faces.png")]["faces"]) == 2
    assert ray_records[str(photos / "empty.jpg")]["error"].endswith("empty file")


def test_ray_parquet_from_a_manifest_has_the_cli_csv_rows(local_ray, photos, bundle_dir, cli_records, tmp_path):
    from facescope.batch import predict_to_shards

    names = sorted(cli_records)[:6] + [str(photos / "missing.jpg")]
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame({"path": names}).to_csv(manifest, index=False)
    # The CLI's default thresholds, but a gender answer only where certain: applied in the network actors.
    thresholds = {**DEFAULT_THRESHOLDS, "gender": 1.0}
    run = predict_to_shards(manifest=str(manifest), output=str(tmp_path / "parquet"), bundle=str(bundle_dir),
                            workers=2, shard_format="parquet", photos_per_task=3, thresholds=thresholds)
    assert (run.files, run.failed) == (7, sum(bool(cli_records[n]["error"]) for n in names[:6]) + 1)
    assert any(e.endswith("missing.jpg: no such file") for e in run.errors)
    table = pd.read_parquet(tmp_path / "parquet")
    for name in names[:6]:
        rows = table[table.path == name]
        faces = cli_records[name]["faces"]
        assert len(rows) == max(1, len(faces))
        assert list(rows.gender.dropna()) == [f["gender"]["label"] if max(f["gender"]["probs"].values()) >= 1
                                              else UNCERTAIN for f in faces]
        assert list(rows.gender_prob.dropna()) == pytest.approx([max(f["gender"]["probs"].values()) for f in faces])
        assert list(rows.race.dropna()) == [f["race"]["label"] for f in faces]
        assert set(rows.model) == {cli_records[name]["model"]}
        assert list(rows.age_years.dropna()) == [f["age"]["years"] for f in faces]


def test_a_rerun_after_a_crash_neither_duplicates_nor_loses_records(local_ray, photos, bundle_dir, tmp_path):
    from facescope.batch import PARTIAL_PREFIX, predict_to_shards

    out = tmp_path / "shards"
    first = predict_to_shards([str(photos)], str(out), bundle=str(bundle_dir), photos_per_task=4, batch_size=4)
    shards = sorted(out.glob("part-*.jsonl"))
    assert first.files == 15 and first.already_done == 0 and len(shards) > 1
    # As a kill -9 leaves it: one shard never finished (lost), one caught half-written.
    lost = len(shards[0].read_text().splitlines())
    shards[0].unlink()
    (out / f"{PARTIAL_PREFIX}part-cut.jsonl").write_text('{"path": "half a rec')
    again = predict_to_shards([str(photos)], str(out), bundle=str(bundle_dir), photos_per_task=4, batch_size=4)
    assert (again.files, again.already_done) == (lost, 15 - lost)
    records = [json.loads(line) for shard in out.glob("part-*.jsonl") for line in shard.read_text().splitlines()]
    paths = [r["path"] for r in records]
    assert len(paths) == len(set(paths)) == 15
    assert not list(out.glob(f"{PARTIAL_PREFIX}*"))
    done = predict_to_shards([str(photos)], str(out), bundle=str(bundle_dir))
    assert (done.files, done.already_done) == (0, 15)


def test_a_full_disk_is_named_however_ray_wraps_it():
    import errno

    from facescope.batch import _is_full_disk

    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as cause:
            raise RuntimeError("a Ray task failed") from cause
    except RuntimeError as wrapped:
        assert _is_full_disk(wrapped)
    assert not _is_full_disk(RuntimeError("something else"))
