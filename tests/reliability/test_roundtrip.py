"""Every text is stored so that training reads it back exactly: line breaks inside a text, quotes, control
characters; a stored split that would not read back is refused with nothing saved."""

from __future__ import annotations

import pytest

from core.data import checking, datasets, reading
from core.store.db import Dataset, session_factory
from tests.conftest import make_rows, write_csv

AWKWARD = [
    "bare\rcarriage return",
    "ends with one\r",
    "windows\r\nline break",
    "unix\nline break",
    '"quoted", with a comma',
    " leading and trailing spaces ",
    "\x0bvertical tab\x0c form feed \x1c\x85\u2028",
    "NA",
    "null",
    "# not a comment",
]


def test_a_text_with_a_bare_carriage_return_reads_back_exactly(settings, tmp_path):
    rows = make_rows(30, 1)
    rows[: len(AWKWARD)] = [(text, i % 3) for i, text in enumerate(AWKWARD)]
    write_csv(tmp_path / "train.csv", rows)
    write_csv(tmp_path / "dev.csv", make_rows(9, 2))
    write_csv(tmp_path / "test.csv", make_rows(9, 3))
    check = checking.check_dataset(reading.files_from_folder(tmp_path), settings)
    assert check.ok, check.errors
    with session_factory(settings.db_url)() as s:
        dataset = datasets.save_dataset(s, settings, check, "awkward")
        train = datasets.load_split(settings, dataset, "train")
    assert train["text"].tolist() == [text for text, _ in rows]
    assert train["label"].tolist() == [label for _, label in rows]


def test_a_split_that_does_not_read_back_is_refused_and_nothing_is_saved(settings, csv_folder, monkeypatch):
    check = checking.check_dataset(reading.files_from_folder(csv_folder), settings)
    real = datasets._read_stored
    monkeypatch.setattr(
        datasets, "_read_stored", lambda path: real(path).replace({"text": {check.splits["train"]["text"][3]: "x"}})
    )
    with session_factory(settings.db_url)() as s:
        with pytest.raises(reading.DataError, match=r"train.csv row 5: the text did not read back"):
            datasets.save_dataset(s, settings, check, "broken")
        assert s.query(Dataset).count() == 0
    assert list(settings.datasets_dir.iterdir()) == []
