"""One labelled file, split for the user: stratified by class, seeded, the split stored; on the Data page (with
the test part's noise floor before saving) and from the command line (`--data FILE`)."""

from __future__ import annotations

import json

import numpy as np

from core.data import checking, datasets, reading, splitting
from core.results import verdict
from core.store.db import Dataset, session_factory
from tests.conftest import make_rows, write_csv
from tests.test_cli import cli
from tests.test_pages import no_worker, open_page, texts  # noqa: F401 - no_worker: an autouse fixture (no worker started)


def test_a_stratified_split_keeps_each_class_share_and_is_seeded():
    labels = np.repeat([0, 1, 2], [500, 300, 23])
    parts = splitting.split_stratified(labels, (80, 10, 10), seed=3)
    assert sorted(np.concatenate(list(parts.values()))) == list(range(len(labels))), "every row once"
    counts = {s: np.bincount(labels[rows], minlength=3).tolist() for s, rows in parts.items()}
    assert counts == {"train": [400, 240, 19], "dev": [50, 30, 2], "test": [50, 30, 2]}  # largest remainder
    again = splitting.split_stratified(labels, (80, 10, 10), seed=3)
    assert all((again[s] == parts[s]).all() for s in parts), "the same seed gives the same split"
    other = splitting.split_stratified(labels, (80, 10, 10), seed=4)
    assert not (other["test"] == parts["test"]).all()
    tiny = splitting.split_stratified(np.array([0, 0, 0, 1, 1, 1, 1]), (80, 10, 10))
    assert all(set(np.array([0, 0, 0, 1, 1, 1, 1])[rows]) == {0, 1} for rows in tiny.values()), "each class in each"


def test_one_file_is_checked_as_a_whole_then_split_and_stored(settings, tmp_path):
    rows = make_rows(200, 1)
    path = write_csv(tmp_path / "news.csv", rows)
    check = checking.check_one_file(reading.SplitFile.from_path(path), settings, shares=(70, 15, 15), seed=1)
    assert check.ok, check.errors
    assert [len(check.splits[s]) for s in reading.SPLITS] == [140, 30, 30]
    assert {s: sum(c.values()) for s, c in check.label_counts.items()} == {"train": 140, "dev": 30, "test": 30}
    assert check.source["split"] == {"file": "news.csv", "shares": [70, 15, 15], "seed": 1}
    with session_factory(settings.db_url)() as s:
        stored = datasets.save_dataset(s, settings, check, "news")
        assert stored.sizes == {"train": 140, "dev": 30, "test": 30}
        back = datasets.load_split(settings, stored, "test")
    assert list(back["text"]) == list(check.splits["test"]["text"]), "the split is what is stored"

    broken = write_csv(tmp_path / "broken.csv", [*rows[:20], ("", 1), ("rare one", 7)])
    check = checking.check_one_file(reading.SplitFile.from_path(broken), settings)
    assert check.errors == ["broken.csv row 22, column '0': the text is empty. Fill it in or delete the row."]
    fixed = write_csv(tmp_path / "rare.csv", [*rows[:20], ("rare one", 7), ("rare two", 7)])
    check = checking.check_one_file(reading.SplitFile.from_path(fixed), settings)
    assert not check.ok and "class '7' has fewer than 3 rows" in check.errors[0]
    assert checking.check_one_file(reading.SplitFile.from_path(fixed), settings, shares=(100, 0, 0)).errors


def test_the_data_page_splits_one_file_and_shows_the_noise_floor(settings, tmp_path):
    path = write_csv(tmp_path / "headlines.csv", make_rows(150, 2))
    at = open_page("data")
    at.radio(key="data_source").set_value("Upload one file, split for me").run()
    at.file_uploader(key="data_one_file").set_value((path.name, path.read_bytes(), "text/csv")).run()
    assert not at.exception and not at.error
    floor = verdict.noise_floor(15)
    assert "Split 120 / 15 / 15 rows" in texts(at.info)
    assert f"With 15 test texts, differences under about {floor:.1f} points" in texts(at.info)
    at.number_input(key="data_share_train").set_value(60).run()
    assert "add up to 80 %" in texts(at.error)
    at.number_input(key="data_share_test").set_value(30).run()
    assert "Split 90 / 15 / 45 rows" in texts(at.info)
    assert at.text_input(key="data_name").value == "headlines"
    at.button(key="data_save").click().run()
    assert not at.exception
    with session_factory(settings.db_url)() as s:
        stored = s.query(Dataset).one()
        assert stored.sizes == {"train": 90, "dev": 15, "test": 45}
        assert stored.source["split"]["shares"] == [60, 10, 30]


def test_the_command_line_takes_one_file_with_data(settings, tmp_path, tiny_model):
    path = write_csv(tmp_path / "all.csv", make_rows(60, 3))
    out = cli("submit", "--data", str(path), "--split", "70,15,15", "--model", tiny_model, settings=settings)
    assert out.returncode == 0, out.stderr
    status = json.loads(cli("status", out.stdout.strip(), "--json", settings=settings).stdout)
    with session_factory(settings.db_url)() as s:
        stored = s.get(Dataset, s.query(Dataset.id).scalar())
        assert stored.sizes == {"train": 42, "dev": 9, "test": 9} and stored.name.startswith("all-")
    assert status["dataset"] == stored.name
    out = cli("submit", "--data", str(path), "--train", str(path), "--model", tiny_model, settings=settings)
    assert out.returncode == 2 and "either --data" in out.stderr


def test_one_file_split_is_not_warned_as_the_same_file_or_a_file_in_the_wrong_box(settings, tmp_path):
    path = write_csv(tmp_path / "thucnews_train.csv", make_rows(200, 1))
    check = checking.check_one_file(reading.SplitFile.from_path(path), settings)
    assert check.ok, check.errors
    assert not [w for w in check.warnings if "The same file" in w or "wrong boxes" in w], check.warnings
