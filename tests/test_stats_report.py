"""`facescope data stats` report: charts inline in the HTML, titles naming the data set and its size, no
raw tuples, small cells flagged, skipped entries listed once."""

from __future__ import annotations

from facescope.data import load_dataset
from facescope.data.stats import SMALL_CELL, write_stats


def test_stats_report_is_readable(tmp_path):
    data = tmp_path / "faces"
    data.mkdir()
    # 40 White men in their twenties, 3 Black women of 60-69, one malformed name.
    for i in range(40):
        (data / f"25_0_0_2017010100000{i:04d}.jpg").write_bytes(b"")
    for i in range(3):
        (data / f"65_1_1_2017010200000{i:04d}.jpg").write_bytes(b"")
    (data / "61_1_20170109142408075.jpg").write_bytes(b"")
    stats = write_stats(load_dataset(data), tmp_path / "report")
    assert stats["balance"]["race_x_gender"]["largest"] == "White / Male"
    markdown = (tmp_path / "report" / "report.md").read_text()
    html = (tmp_path / "report" / "report.html").read_text()
    assert markdown.startswith("# Data set statistics: faces (utkface, 43 faces)")
    assert "![faces (utkface, 43 faces): faces by race](race.png)" in markdown  # charts shown, not named
    assert html.count('src="data:image/png;base64,') == 7 and "http" not in html.split("<body>")[0]
    assert "('" not in markdown and "('" not in html
    assert markdown.count("61_1_20170109142408075.jpg") == 1
    assert f"fewer than {SMALL_CELL} faces" in markdown  # the 3 Black women, and the empty cells
    for name in ("race_x_age_bin", "race_x_age_bin_share"):
        assert (tmp_path / "report" / f"{name}.png").read_bytes().startswith(b"\x89PNG")
