"""The one table and document renderer every report uses."""

from __future__ import annotations

import numpy as np

from facescope.document import Document, Section, Table, format_number, markdown_table


def test_numbers_keep_their_significant_digits():
    assert [format_number(v) for v in (0.0005, 0.001, 0.9362, 4.5424, 16155, 16155.0, 59.3, None, float("nan"))] == [
        "0.0005", "0.001", "0.936", "4.54", "16,155", "16,155", "59.3", "–", "–"]


def test_markdown_table_right_aligns_numbers_and_escapes_pipes():
    text = markdown_table(["group", "faces"], [["White | Male", 1436], ["Others", np.int64(7)]])
    assert text.splitlines() == ["| group | faces |", "|---|---:|", "| White \\| Male | 1,436 |", "| Others | 7 |"]


def test_one_document_in_markdown_html_and_json():
    document = Document("Title", [Section("Part", ["A **bold** claim.", ["one", "two"],
                                                   Table(["group", "n"], [["small", 3]], muted=[True])])])
    markdown, html = document.to_markdown(), document.to_html()
    assert "## Part" in markdown and "- one" in markdown and "| _small_ | 3 |" in markdown
    assert "<strong>bold</strong>" in html and 'class="muted"' in html
    assert document.sections[0].to_dict() == {"title": "Part", "paragraphs": ["A **bold** claim.", "- one", "- two"],
                                              "tables": [{"columns": ["group", "n"], "rows": [["small", 3]]}]}
