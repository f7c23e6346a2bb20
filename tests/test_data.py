"""Reading and checking CSVs: every refusal names the file, row and column, and nothing is stored."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import func, select

from core.data import datasets, reading
from core.data.checking import check_dataset
from core.data.reading import SplitFile
from core.store.db import Dataset, session_factory
from tests.conftest import make_rows, write_csv


def csv_bytes(rows, header=("0", "1"), encoding="utf-8") -> bytes:
    lines = [",".join(header)] + [f"{t},{y}" for t, y in rows]
    return ("\n".join(lines) + "\n").encode(encoding)


def good_files(**override) -> dict[str, SplitFile]:
    files = {
        "train": SplitFile("train.csv", csv_bytes(make_rows(30, 1))),
        "dev": SplitFile("dev.csv", csv_bytes(make_rows(9, 2))),
        "test": SplitFile("test.csv", csv_bytes(make_rows(9, 3))),
    }
    files.update({k: SplitFile(f"{k}.csv", v) for k, v in override.items()})
    return files


def stored_count(settings) -> int:
    with session_factory(settings.db_url)() as s:
        return s.scalar(select(func.count(Dataset.id)))


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk"])
def test_chinese_csv_in_each_encoding_reads_without_garbling(settings, tmp_path, encoding):
    rows = make_rows(30, 1, chinese=True)
    files = {}
    for split, n in (("train", 30), ("dev", 9), ("test", 9)):
        path = write_csv(tmp_path / f"{split}.csv", rows[:n], encoding=encoding)
        files[split] = SplitFile.from_path(path)
    check = check_dataset(files, settings)
    assert check.ok, check.errors
    assert check.splits["train"]["text"].tolist() == [t for t, _ in rows]
    assert check.source["train"]["encoding"] == {"utf-8": "utf-8", "utf-8-sig": "utf-8-sig", "gbk": "gbk"}[encoding]
    assert list(check.tables["train"].columns) == ["0", "1"]  # a BOM does not stick to the first header


def test_string_labels_and_chosen_columns(settings):
    rows = [(f"sample {i}", ["pos", "neg", "neutral"][i % 3]) for i in range(12)]
    body = "id,review,sentiment\n" + "".join(f"{i},{t},{y}\n" for i, (t, y) in enumerate(rows))
    files = {s: SplitFile(f"{s}.csv", body.encode()) for s in reading.SPLITS}
    assert reading.guess_columns(["id", "review", "sentiment"]) == ("review", "id")  # guessed wrong: user picks
    check = check_dataset(files, settings, text_column="review", label_column="sentiment")
    assert check.ok, check.errors
    assert check.classes == ["neg", "neutral", "pos"]
    assert check.splits["train"]["label"].tolist()[:3] == [2, 0, 1]


def test_integer_labels_get_names_from_class_list(settings):
    names = reading.read_class_names("体育\n财经\n科技\n".encode())
    check = check_dataset(good_files(), settings, class_names=names)
    assert check.ok
    assert check.classes == ["体育", "财经", "科技"]
    assert check.label_counts["train"] == {"体育": 10, "财经": 10, "科技": 10}
    too_short = check_dataset(good_files(), settings, class_names=["only", "two"])
    assert any("label 2 needs name number 3" in e for e in too_short.errors)


def test_warnings_are_kept_but_not_fatal(settings, tiny_model):
    from core.training.models import load_tokenizer

    train = make_rows(30, 1) + [(f"goal match team {i}", 0) for i in range(100)]
    long_text = " ".join(["goal"] * 80)
    test = make_rows(8, 3) + [(train[0][0], train[0][1]), (long_text, 0)]
    files = good_files(train=csv_bytes(train), test=csv_bytes(test))
    check = check_dataset(files, settings, tokenizer=load_tokenizer(tiny_model, settings), max_length=16)
    assert check.ok, check.errors
    text = " ".join(check.warnings)
    assert "Heavy class imbalance in train" in text
    assert "1 texts in test.csv also appear in train.csv (row 10)" in text
    assert "longer than 16 tokens" in text


def test_saved_dataset_round_trips_and_names_are_unique(settings):
    check = check_dataset(good_files(), settings)
    sessions = session_factory(settings.db_url)
    with sessions() as s:
        ds = datasets.save_dataset(s, settings, check, "tiny")
        assert datasets.load_split(settings, ds, "dev").equals(check.splits["dev"])
        assert datasets.find_same_dataset(s, check).id == ds.id
        with pytest.raises(reading.DataError, match="already exists"):
            datasets.save_dataset(s, settings, check, "tiny")
        datasets.delete_dataset(s, settings, ds)
    assert stored_count(settings) == 0
    assert not (settings.data_dir / ds.path).exists()


def test_failed_store_leaves_no_files_or_row(settings, monkeypatch):
    check = check_dataset(good_files(), settings)

    def broken_write(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", broken_write)
    with session_factory(settings.db_url)() as s, pytest.raises(OSError):
        datasets.save_dataset(s, settings, check, "full-disk")
    assert stored_count(settings) == 0
    assert list(settings.datasets_dir.iterdir()) == []


def test_a_class_names_file_naming_one_class_twice_is_refused_in_plain_words(settings, tmp_path):
    with pytest.raises(reading.DataError) as refused:
        reading.read_class_names(b"sport\nbusiness\n\nsport \ntech\n", "names.txt")
    assert refused.value.problems == [
        "names.txt: lines 1 and 4 both say 'sport'. Line i names label i, so each label needs a name of its own: "
        "rename one of them."
    ]
    from tests.test_cli import cli, split_args

    write_csv(tmp_path / "train.csv", make_rows(30, 1))
    write_csv(tmp_path / "dev.csv", make_rows(9, 2))
    write_csv(tmp_path / "test.csv", make_rows(9, 3))
    (tmp_path / "names.txt").write_text("sport\nsport\ntech\n")
    out = cli("submit", *split_args(tmp_path), "--classes", str(tmp_path / "names.txt"), settings=settings)
    assert out.returncode == 2 and "lines 1 and 2 both say 'sport'" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
