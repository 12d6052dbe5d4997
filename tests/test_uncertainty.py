"""Bootstrap intervals: the weighted-sum figures equal sklearn's, the intervals equal a hand computation,
people are resampled whole, degenerate figures are not computed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame
from scipy.stats import binom
from sklearn.metrics import accuracy_score

from facescope.evaluation.metrics import (
    GROUPINGS, OVERALL, bootstrap_replicates, evaluate, metrics_by_group, table_bootstrap,
)
from facescope.evaluation.uncertainty import WeightedFigures, percentile_interval, resample_weights
from tests.test_evaluation import crafted_table


def test_weighted_figures_without_resampling_equal_the_metricframe_figures():
    table = crafted_table()
    by_group = metrics_by_group(table).set_index(["grouping", "group"])
    # No resample: only checks the keys below.
    unresampled = bootstrap_replicates(table, table_bootstrap(table, n_boot=0))
    assert set(unresampled) == {OVERALL, *by_group.index}
    from facescope.evaluation.metrics import (
        CALIBRATION_BINS, WITHIN_YEARS, age_heads, degenerate_metrics, evaluated_heads, head_labels,
    )

    engine = WeightedFigures(table, {h: head_labels(table, h) for h in evaluated_heads(table)}, age_heads(table),
                             CALIBRATION_BINS, WITHIN_YEARS)
    ones = np.ones((1, len(table)), dtype=np.float32)
    compared = 0
    for grouping, columns in GROUPINGS.items():
        keys = table[list(columns)].agg(" / ".join, axis=1)
        for group in keys.unique():
            figures = engine.figures((keys == group).to_numpy(), ones, degenerate_metrics(columns))
            expected = by_group.loc[(grouping, group)]
            for metric, values in figures.items():
                assert values[0] == pytest.approx(expected[metric], abs=1e-6), (grouping, group, metric)
                compared += 1
    assert compared > 150


def test_accuracy_interval_matches_the_binomial_hand_computation():
    # 50 faces, 40 gender calls right: a resample's accuracy is Binomial(50, 0.8) / 50, so its 2.5th and
    # 97.5th percentiles are binom.ppf(0.025 / 0.975, 50, 0.8) / 50 = 0.68 and 0.90.
    table = crafted_table().sample(50, replace=True, random_state=0).reset_index(drop=True)
    table["gender"] = "Female"
    table["pred_gender"] = ["Female"] * 40 + ["Male"] * 10
    result = evaluate(table, n_boot=20000, seed=1)
    low, high = result.interval("gender_accuracy")
    assert (low, high) == pytest.approx((binom.ppf(0.025, 50, 0.8) / 50, binom.ppf(0.975, 50, 0.8) / 50), abs=0.021)
    assert (binom.ppf(0.025, 50, 0.8) / 50, binom.ppf(0.975, 50, 0.8) / 50) == (0.68, 0.9)
    # fairlearn's own MetricFrame bootstrap (200 resamples: it reruns sklearn on each) agrees.
    frame = MetricFrame(metrics=accuracy_score, y_true=table["gender"], y_pred=table["pred_gender"],
                        sensitive_features=table["race"], n_boot=200, ci_quantiles=[0.025, 0.975], random_state=3)
    assert [float(frame.overall_ci[0]), float(frame.overall_ci[1])] == pytest.approx([low, high], abs=0.041)


def test_gap_interval_is_the_bootstrap_of_the_named_pair():
    table = pd.concat([crafted_table()] * 10, ignore_index=True)
    result = evaluate(table, min_group_size=30, n_boot=500)
    gap = result.gaps[(result.gaps["grouping"] == "race") & (result.gaps["metric"] == "gender_accuracy")].iloc[0]
    low, high = gap["difference_low"], gap["difference_high"]
    assert low < gap["difference"] < high
    replicates = result.replicates
    difference = (replicates[("race", gap["highest_group"])]["gender_accuracy"]
                  - replicates[("race", gap["lowest_group"])]["gender_accuracy"])
    assert (low, high) == pytest.approx(percentile_interval(difference))


def test_degenerate_figures_are_not_computed_and_not_ranked():
    result = evaluate(pd.concat([crafted_table()] * 5, ignore_index=True), min_group_size=30, n_boot=50)
    by_race = result.by_group[result.by_group["grouping"] == "race"]
    assert by_race["race_macro_f1"].isna().all() and by_race["race_balanced_accuracy"].isna().all()
    assert by_race["gender_macro_f1"].notna().all()
    by_gender = result.by_group[result.by_group["grouping"] == "gender"]
    assert by_gender["gender_macro_f1"].isna().all()
    assert not result.gaps["metric"].isin(["race_macro_f1"]).any() or not (
        result.gaps[result.gaps["metric"] == "race_macro_f1"]["grouping"].str.contains("race")).any()
    # Groups below the minimum size are listed but never in a gap.
    small = result.by_group[result.by_group["n"] < 30]["group"]
    assert not result.gaps["lowest_group"].isin(small).any() and not result.gaps["highest_group"].isin(small).any()


def test_people_are_resampled_whole():
    table = crafted_table().assign(person=["a", "a", "b", "b", "c", "c", "d", "d", "e", "e", "f", "f"])
    weights = resample_weights(table, n_boot=200, seed=0)
    assert weights.shape == (200, 12)
    assert (weights[:, 0::2] == weights[:, 1::2]).all()  # both photos of a person drawn together
    assert (weights.sum(axis=1) == 12).all()
    assert evaluate(table, min_group_size=3, n_boot=50).resampling == "person"


def test_one_evaluation_builds_one_figures_engine_for_its_groups_and_its_estimated_groups(monkeypatch):
    """The figures by group and by estimated group are taken with the same engine and resamples: the
    estimated overall interval of an accuracy is the overall interval of the figures by group."""
    built = []
    original = WeightedFigures.__init__

    def counted(self, *args, **kwargs):
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(WeightedFigures, "__init__", counted)
    result = evaluate(crafted_table(), min_group_size=3, n_boot=200, seed=4)
    assert len(built) == 1
    estimated = result.by_estimate["figures"]["overall"]["all"]["gender_accuracy"]
    low, high = result.interval("gender_accuracy")
    assert estimated["interval"] == [round(low, 4), round(high, 4)]
