import math

import pytest

from facescope import labels


@pytest.mark.parametrize(
    "years, expected",
    [(0, "0-2"), (2, "0-2"), (2.9, "0-2"), (3, "3-9"), (9, "3-9"), (10, "10-19"), (19, "10-19"), (20, "20-29"),
     (39, "30-39"), (40, "40-49"), (59, "50-59"), (69, "60-69"), (70, "70+"), (116, "70+")],
)
def test_age_to_bin_edges(years, expected):
    assert labels.age_to_bin(years) == expected


@pytest.mark.parametrize("bad", [-1, math.nan, math.inf, None])
def test_age_to_bin_rejects_nonsense(bad):
    with pytest.raises(ValueError):
        labels.age_to_bin(bad)


def test_year_to_bin_index_covers_every_year_in_order():
    index = labels.year_to_bin_index()
    assert len(index) == labels.MAX_AGE + 1
    assert index[0] == 0 and index[-1] == len(labels.AGE_BINS) - 1
    assert all(b >= a for a, b in zip(index, index[1:]))
    assert sum(1 for i in index if i == 0) == 3  # years 0, 1, 2


def test_fairface_bin_alias():
    assert labels.normalise_age_bin("more than 70") == "70+"
    with pytest.raises(ValueError):
        labels.normalise_age_bin("70-79")


@pytest.mark.parametrize(
    "race, to_utk, to_ff4",
    [("White", "White", "White"), ("Black", "Black", "Black"), ("Latino_Hispanic", "Others", None),
     ("East Asian", "Asian", "Asian"), ("Southeast Asian", "Asian", "Asian"), ("Indian", "Indian", "Indian"),
     ("Middle Eastern", "Others", None)],
)
def test_fairface7_mappings(race, to_utk, to_ff4):
    assert labels.map_race(race, "fairface7", "utkface5") == to_utk
    assert labels.map_race(race, "fairface7", "fairface4") == to_ff4


def test_mappings_cover_every_source_label_and_land_in_target():
    for (source, target), mapping in labels.RACE_MAPPINGS.items():
        assert set(mapping) == set(labels.taxonomy(source).labels)
        assert set(mapping.values()) - {None} <= set(labels.taxonomy(target).labels)


def test_unknown_labels_and_mappings_are_errors():
    with pytest.raises(ValueError):
        labels.map_race("Martian", "fairface7", "utkface5")
    with pytest.raises(ValueError):
        labels.map_race("White", "utkface5", "fairface7")
    with pytest.raises(ValueError):
        labels.taxonomy("nope")
