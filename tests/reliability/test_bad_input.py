"""Hostile and broken uploads, one table: each gets a specific answer, and a refused one stores nothing."""

from __future__ import annotations

import codecs

import pytest
from sqlalchemy import func, select

from core.data import datasets, reading
from core.data.checking import check_dataset
from core.data.reading import SplitFile
from core.store.db import Dataset, session_factory
from tests.conftest import make_rows


def csv_bytes(rows, header=("0", "1"), encoding="utf-8", sep=",") -> bytes:
    lines = [sep.join(header)] + [f"{t}{sep}{y}" for t, y in rows]
    return ("\n".join(lines) + "\n").encode(encoding)


def good(n=30, seed=1):
    return make_rows(n, seed)


def files_with(**override) -> dict[str, SplitFile]:
    files = {
        "train": csv_bytes(good(30, 1)),
        "dev": csv_bytes(good(9, 2)),
        "test": csv_bytes(good(9, 3)),
    }
    files.update(override)
    return {k: SplitFile(f"{k}.csv", v) for k, v in files.items()}


REFUSED = [
    ("empty", {"train": b""}, "train.csv is empty"),
    ("whitespace only", {"train": b"  \n\n \n"}, "train.csv is empty"),
    ("header only", {"dev": b"0,1\n"}, "dev.csv has a header but no rows"),
    ("binary", {"test": bytes(range(256)) * 4}, "test.csv line 1 contains NUL bytes"),
    ("NUL bytes in text", {"train": b"0,1\nhello,0\nbad\x00text,1\n"}, "train.csv line 3 contains NUL bytes"),
    ("zip renamed .csv", {"train": b"PK\x03\x04\x14\x00\x06\x00rest"}, "train.csv is a ZIP archive"),
    (
        "mixed encodings",
        {"train": "0,1\n足球比赛,0\n".encode() + "股票市场,1\n".encode("gbk")},
        "train.csv mixes text encodings: line 2 is UTF-8 but line 3 is not",
    ),
    (
        "1 MB single cell",
        {"dev": csv_bytes([("x" * 2**20, 0), ("fine", 1)])},
        "dev.csv row 2, column '0': the text is longer",
    ),
    ("ragged rows", {"train": b"0,1\nhello,1\nbad,row,here\n"}, "train.csv line 3: 3 fields where the header has 2"),
    ("single column", {"train": b"just text\nhello\n"}, "train.csv has only one column"),
    ("missing column", {"dev": b"text,label\nhello,1\n"}, "dev.csv has no column '0', '1'"),
    ("empty text", {"train": csv_bytes([*good(10), ("  ", 1)])}, "train.csv row 12, column '0': the text is empty"),
    ("missing label", {"test": csv_bytes([("some text", 0), ("more text", "")])}, "test.csv row 3, column '1'"),
    ("one class", {"train": csv_bytes([(f"text {i}", 1) for i in range(10)])}, "at least 2 classes"),
    ("unseen dev label", {"dev": csv_bytes([("a text", 0), ("another", 7)])}, "dev.csv row 3, column '1': label '7'"),
    ("unseen test label", {"test": csv_bytes([("a text", "spam")])}, "test.csv row 2, column '1': label 'spam'"),
    ("fractional labels", {"train": csv_bytes([("a", "0.5"), ("b", "1.5")])}, "holds numbers such as '0.5'"),
]


def stored(settings) -> int:
    with session_factory(settings.db_url, read_only=True)() as s:
        return s.scalar(select(func.count(Dataset.id)))


@pytest.mark.parametrize("case,override,expected", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_with_a_specific_message_and_nothing_stored(settings, case, override, expected):
    check = check_dataset(files_with(**override), settings)
    assert not check.ok
    assert expected in " ".join(check.errors), check.errors
    with session_factory(settings.db_url)() as s, pytest.raises(reading.DataError):
        datasets.save_dataset(s, settings, check, case)
    assert stored(settings) == 0
    assert not settings.datasets_dir.exists() or not any(settings.datasets_dir.iterdir())


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(settings, tmp_path, monkeypatch):
    huge = tmp_path / "train.csv"
    with open(huge, "wb") as f:
        f.truncate(300 * 2**20)  # 300 MB, sparse: nothing is written or read
    read = SplitFile.read

    def read_small_only(self):
        assert self.data != huge, "the 300 MB file was read"
        return read(self)

    monkeypatch.setattr(SplitFile, "read", read_small_only)
    files = files_with()
    files["train"] = SplitFile.from_path(huge)
    check = check_dataset(files, settings)
    assert "train.csv is 300 MB; the limit is 200 MB" in " ".join(check.errors)


def test_a_million_rows_is_over_the_row_limit(settings, monkeypatch):
    monkeypatch.setenv("LORALAB_MAX_ROWS", "999999")
    from core.store.settings import get_settings

    body = b"0,1\n" + b"t,0\nu,1\n" * 500_000
    check = check_dataset(files_with(train=body), get_settings())
    assert "train.csv has more than 999,999 rows" in " ".join(check.errors)


TWO_CLASSES = csv_bytes([("goal match", 0), ("bank shares", 1)])


def _accepted(settings, **override):
    check = check_dataset(files_with(**override), settings)
    assert check.ok, check.errors
    return check


def test_utf16_with_and_without_bom_is_read(settings):
    rows = good(30, 1)
    for encoded in (
        codecs.BOM_UTF16_LE + csv_bytes(rows, encoding="utf-16-le"),
        csv_bytes(rows, encoding="utf-16-le"),
    ):
        check = _accepted(settings, train=encoded)
        assert check.source["train"]["encoding"] == "utf-16"
        assert check.splits["train"]["text"].tolist() == [t for t, _ in rows]


def test_semicolon_and_tab_separated_files_are_read(settings):
    for sep in (";", "\t"):
        check = _accepted(settings, train=csv_bytes(good(30, 1), sep=sep))
        assert len(check.splits["train"]) == 30


def test_quoted_newlines_stay_inside_the_text(settings):
    body = b'0,1\n"first line\nsecond line",0\nplain,1\n'
    check = _accepted(settings, train=body, dev=TWO_CLASSES, test=TWO_CLASSES)
    assert check.splits["train"]["text"].tolist() == ["first line\nsecond line", "plain"]


def test_formula_html_rtl_and_emoji_text_is_kept_intact(settings):
    texts = [
        "=cmd|' /C calc'!A0",
        "+SUM(A1:A9)",
        "<script>alert('x')</script><b>bold</b>",
        "مرحبا بالعالم",  # right-to-left
        "שלום עולם",
        "great match ⚽🔥 👍🏽",
    ]
    rows = [(f'"{t}"' if "," in t else t, i % 2) for i, t in enumerate(texts)]
    check = _accepted(settings, train=csv_bytes(rows), dev=TWO_CLASSES, test=TWO_CLASSES)
    assert check.splits["train"]["text"].tolist() == texts


def test_float_written_labels_are_read_as_whole_numbers(settings):
    rows = [(t, f"{y}.0") for t, y in good(30, 1)]
    check = _accepted(settings, train=csv_bytes(rows))
    assert check.classes == ["0", "1", "2"]
    assert any("read as whole numbers" in w for w in check.warnings)


def test_negative_labels_are_classes(settings):
    rows = [(t, -1 if y == 0 else y) for t, y in good(30, 1)]
    check = _accepted(
        settings, train=csv_bytes(rows), dev=csv_bytes([("a", -1), ("b", 1)]), test=csv_bytes([("c", 2)])
    )
    assert check.classes == ["-1", "1", "2"]
