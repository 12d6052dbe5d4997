"""Loaders, format detection, splits and stats: the real UTKFace folder and fixtures written from real crops."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facescope.data import detect_format, load_dataset
from facescope.data.loaders import UnknownDatasetLayout
from facescope.data.records import FaceRecord
from facescope.data.splits import assign_splits, write_split_manifest
from facescope.data.stats import write_stats
from facescope.labels import AGE_BIN_LABELS, taxonomy

# From ../shared/data/README.md.
UTK_GENDER_COUNTS = {"Male": 10_550, "Female": 9_647}
UTK_RACE_COUNTS = {"White": 8_576, "Black": 3_860, "Asian": 2_951, "Indian": 3_374, "Others": 1_436}


@pytest.fixture(scope="module")
def utkface(utkface_dir):
    return load_dataset(utkface_dir)


def test_utkface_folder_counts_match_the_published_ones(utkface):
    frame = utkface.to_frame()
    assert utkface.format == "utkface" and utkface.taxonomy == "utkface5"
    assert frame["gender"].value_counts().to_dict() == UTK_GENDER_COUNTS
    assert frame["race"].value_counts().to_dict() == UTK_RACE_COUNTS
    assert len(utkface) == 20_197


def test_utkface_malformed_names_are_skipped_by_name(utkface):
    skipped = {s.name for s in utkface.skipped}
    assert skipped == {
        "39_1_20170116174525125.jpg.chip.jpg",
        "61_1_20170109142408075.jpg.chip.jpg",
        "61_1_20170109150557335.jpg.chip.jpg",
    }


def test_utkface_labels_are_read_from_the_name(utkface):
    record = next(r for r in utkface.records if r.original == "100_1_0_20170110183726390.jpg.chip.jpg")
    assert (record.age_years, record.age_bin, record.gender, record.race) == (100.0, "70+", "Female", "White")
    record = next(r for r in utkface.records if r.original.startswith("1_0_2_"))
    assert (record.age_years, record.age_bin, record.gender, record.race) == (1.0, "0-2", "Male", "Asian")


def _real_crops(utkface_dir: Path, n: int) -> list[Path]:
    return sorted(utkface_dir.iterdir())[100:100 + n]


def test_fairface_folder(tmp_path, utkface_dir):
    crops = _real_crops(utkface_dir, 4)
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    for i, crop in enumerate(crops):
        shutil.copy(crop, tmp_path / ("train" if i < 3 else "val") / f"{i + 1}.jpg")
    (tmp_path / "fairface_label_train.csv").write_text(
        "file,age,gender,race,service_test\n"
        "train/1.jpg,50-59,Male,East Asian,True\n"
        "train/2.jpg,more than 70,Female,Latino_Hispanic,False\n"
        "train/3.jpg,20-29,Robot,White,False\n"  # malformed gender
    )
    (tmp_path / "fairface_label_val.csv").write_text(
        "file,age,gender,race,service_test\nval/4.jpg,3-9,Female,Middle Eastern,True\n"
    )
    assert detect_format(tmp_path) == "fairface"
    dataset = load_dataset(tmp_path)
    got = [(Path(r.source).name, r.age_years, r.age_bin, r.gender, r.race, r.partition) for r in dataset.records]
    assert got == [
        ("1.jpg", None, "50-59", "Male", "East Asian", "train"),
        ("2.jpg", None, "70+", "Female", "Latino_Hispanic", "train"),
        ("4.jpg", None, "3-9", "Female", "Middle Eastern", "val"),
    ]
    assert dataset.taxonomy == "fairface7"
    assert [s.name for s in dataset.skipped] == ["fairface_label_train.csv:4"]
    assert all(Path(r.source).exists() for r in dataset.records)


def test_the_shared_fairface_folder_reads_every_woman_with_her_age_group_and_seven_races(utkface_dir):
    folder = utkface_dir.parent / "fairface"
    if not folder.is_dir():
        pytest.skip("no FairFace folder beside utkface/")
    dataset = load_dataset(folder)
    assert dataset.format == "fairface" and dataset.taxonomy == "fairface7" and not dataset.skipped
    records = dataset.records
    assert len(records) == 2604  # the FairFace validation women the folder holds (its README)
    assert {r.gender for r in records} == {"Female"} and {r.partition for r in records} == {"val"}
    assert {r.race for r in records} == set(taxonomy("fairface7").labels)
    assert {r.age_bin for r in records} == set(AGE_BIN_LABELS)
    assert all(r.age_years is None for r in records)
    assert all(Path(r.source).is_file() for r in records[::97])


def test_utk48_csv(tmp_path, utkface_dir):
    rows = []
    for i, crop in enumerate(_real_crops(utkface_dir, 3)):
        grey = np.asarray(Image.open(crop).convert("L").resize((48, 48)))
        rows.append((crop, grey))
    lines = ["age,ethnicity,gender,img_name,pixels"]
    lines.append(f"23,3,1,a.jpg,{' '.join(map(str, rows[0][1].ravel()))}")
    lines.append(f"67,1,0,b.jpg,{' '.join(map(str, rows[1][1].ravel()))}")
    lines.append(f"30,1,0,short.jpg,{' '.join(map(str, rows[2][1].ravel()[:100]))}")  # too few pixels
    lines.append(f"30,9,0,badrace.jpg,{' '.join(map(str, rows[2][1].ravel()))}")  # race code 9
    path = tmp_path / "age_gender.csv"
    path.write_text("\n".join(lines) + "\n")
    assert detect_format(path) == "utk48csv"
    dataset = load_dataset(path)
    got = [(r.original, r.age_years, r.age_bin, r.gender, r.race) for r in dataset.records]
    assert got == [("a.jpg", 23.0, "20-29", "Female", "Indian"), ("b.jpg", 67.0, "60-69", "Male", "Black")]
    assert np.array_equal(dataset.records[0].pixels, rows[0][1])
    assert sorted(s.name for s in dataset.skipped) == ["badrace.jpg", "short.jpg"]


def test_manifest(tmp_path, utkface_dir):
    crops = _real_crops(utkface_dir, 3)
    for i, crop in enumerate(crops):
        shutil.copy(crop, tmp_path / f"face{i}.jpg")
    path = tmp_path / "manifest.csv"
    path.write_text(
        "path,age,gender,race,race_taxonomy\n"
        "face0.jpg,34,Female,Indian,utkface5\n"
        "face1.jpg,,Male,,utkface5\n"
        "face2.jpg,abc,Male,White,utkface5\n"  # bad age
    )
    assert detect_format(path) == "manifest"
    dataset = load_dataset(path)
    got = [(Path(r.source).name, r.age_years, r.age_bin, r.gender, r.race) for r in dataset.records]
    assert got == [("face0.jpg", 34.0, "30-39", "Female", "Indian"), ("face1.jpg", None, None, "Male", None)]
    assert [s.name for s in dataset.skipped] == ["face2.jpg"]


def test_manifest_races_without_a_taxonomy_are_refused(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("path,race\na.jpg,White\n")
    with pytest.raises(ValueError, match="taxonomy"):
        load_dataset(path)
    assert load_dataset(path, taxonomy="fairface4").records[0].race == "White"


def test_unknown_layout_names_the_understood_formats(tmp_path):
    (tmp_path / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(UnknownDatasetLayout, match="FairFace.*48x48.*manifest"):
        load_dataset(tmp_path)
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(UnknownDatasetLayout, match=r"columns \['a', 'b'\]"):
        load_dataset(other)


def test_splits_are_reproducible_stratified_and_reloadable(utkface, tmp_path):
    records = utkface.records
    first = assign_splits(records, 0.1, 0.1, seed=0)
    again = assign_splits(list(reversed(records)), 0.1, 0.1, seed=0)
    assert first == list(reversed(again))  # depends on the records, not their order
    assert first != assign_splits(records, 0.1, 0.1, seed=1)
    frame = utkface.to_frame().assign(split=first)
    shares = frame.groupby(["race", "gender"])["split"].apply(lambda s: (s == "test").mean())
    assert shares.between(0.095, 0.105).all()
    manifest = write_split_manifest(records, first, tmp_path / "splits.csv")
    # A model trained from the manifest still knows its data was UTKFace (and so its licence).
    reloaded = load_dataset(manifest)
    assert reloaded.source_format == "utkface"
    pd.read_csv(manifest).drop(columns="dataset").to_csv(tmp_path / "hand_made.csv", index=False)
    assert load_dataset(tmp_path / "hand_made.csv").source_format == "manifest"
    assert len(reloaded) == len(records)
    assert [r.partition for r in reloaded.records] == first
    assert [(r.age_years, r.gender, r.race) for r in reloaded.records[:50]] == [
        (r.age_years, r.gender, r.race) for r in records[:50]
    ]


def test_stats_report(utkface, tmp_path):
    stats = write_stats(utkface, tmp_path)
    counts = {r["race"]: r["count"] for r in stats["counts"]["race"]}
    assert counts == UTK_RACE_COUNTS
    assert stats["race_x_gender"]["Others"]["Male"] + stats["race_x_gender"]["Others"]["Female"] == 1_436
    assert stats["balance"]["race"] == {"largest": "White", "smallest": "Others", "largest_over_smallest": 5.97}
    assert sum(r["count"] for r in stats["counts"]["age_bin"]) == 20_197
    saved = json.loads((tmp_path / "stats.json").read_text())
    assert saved["dataset"]["skipped"] == 3
    report = (tmp_path / "report.md").read_text()
    assert "61_1_20170109142408075.jpg.chip.jpg" in report and "| Others | 1,436 | 7.1% |" in report
    for name in ("age_histogram", "race", "gender", "age_bin", "race_x_gender", "race_x_age_bin"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000


def test_a_split_manifest_over_two_race_taxonomies_reads_back_each_row_in_its_own(tmp_path, utkface_dir):
    from facescope.data.splits import read_split_manifest

    crops = _real_crops(utkface_dir, 2)
    records = [FaceRecord(str(crops[0]), 30.0, "30-39", "Female", "Asian", "utkface5", crops[0].name, dataset="utkface"),
               FaceRecord(str(crops[1]), None, "20-29", "Male", "East Asian", "fairface7", crops[1].name,
                          dataset="fairface")]
    path = write_split_manifest(records, ["train", "test"], tmp_path / "splits.csv")
    with pytest.raises(ValueError, match="one taxonomy"):  # as a data set to evaluate: one taxonomy or none
        load_dataset(path)
    dataset = read_split_manifest(path)
    assert [(r.race, r.taxonomy, r.partition, r.dataset) for r in dataset.records] == [
        ("Asian", "utkface5", "train", "utkface"), ("East Asian", "fairface7", "test", "fairface")]
    assert dataset.taxonomy == "fairface7" and not dataset.skipped
