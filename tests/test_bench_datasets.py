"""bench/build_data.py's split: stratified, no text in two splits, the same for the same seed. Offline: a synthetic
frame stands in for the package's rows."""

import pandas as pd
import pytest

from bench import build_data
from core.data import checking, reading
from core.store.settings import get_settings

SIZES = {"train": 200, "dev": 50, "test": 100}


def frame(counts=(600, 300, 100)) -> pd.DataFrame:
    rows = [(f"text {label} number {i}, with a comma", label) for label, n in enumerate(counts) for i in range(n)]
    return pd.DataFrame(rows, columns=["text", "label"])


def test_each_split_has_its_size_and_the_classes_in_their_shares():
    splits = build_data.split_frame(frame(), SIZES, seed=1)
    for split, n in SIZES.items():
        counts = splits[split]["label"].value_counts()
        assert len(splits[split]) == n
        for label, share in {0: 0.6, 1: 0.3, 2: 0.1}.items():
            assert abs(counts[label] - share * n) <= 1, (split, label, counts.to_dict())


def test_none_takes_every_row_left_over():
    splits = build_data.split_frame(frame(), {"test": 100, "dev": 50, "train": None}, seed=1)
    assert len(splits["train"]) == 1000 - 150
    assert splits["train"]["label"].value_counts().to_dict() == {0: 510, 1: 255, 2: 85}


def test_duplicates_land_in_one_split_and_texts_under_two_labels_in_none():
    df = frame()
    copies = pd.DataFrame(
        {
            "text": ["TEXT 0 number 5,  with a comma ", "text 0 number 5, with a comma", "both", "both", ""] * 20,
            "label": [0, 0, 1, 2, 1] * 20,
        }
    )
    splits = build_data.split_frame(pd.concat([df, copies]), SIZES, seed=1)
    keys = [set(s["text"].str.casefold()) for s in splits.values()]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    every = pd.concat(splits.values())["text"]
    assert "both" not in set(every) and "" not in set(every)
    assert (every.str.casefold() == "text 0 number 5, with a comma").sum() <= 1


def test_the_same_seed_gives_the_same_split_and_another_seed_another():
    a, b, c = (build_data.split_frame(frame(), SIZES, seed=s) for s in (7, 7, 8))
    for split in SIZES:
        pd.testing.assert_frame_equal(a[split], b[split])
    assert set(a["test"]["text"]) != set(c["test"]["text"])


def test_a_class_too_small_for_a_split_is_refused():
    with pytest.raises(ValueError, match="class .2. would have no dev rows"):
        build_data.split_frame(frame((600, 300, 5)), SIZES, seed=1)
    with pytest.raises(ValueError, match="rows asked for"):
        build_data.split_frame(frame((100, 100)), SIZES, seed=1)


def test_a_built_set_is_in_the_seed_layout_and_passes_the_upload_check(tmp_path, monkeypatch):
    names = ["zeta", "alpha", "mid"]
    raw = frame((1200, 600, 300)).assign(label=lambda d: d["label"].map(dict(enumerate(names))))
    spec = build_data.DataSet("toy", build_data.BOLT, "English", "synthetic", "none", read=lambda read: raw)
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "stale.csv").write_text("old")
    build_data.build(spec, read=None, folder=folder, seed=3, sizes=SIZES)
    assert sorted(p.name for p in folder.iterdir()) == ["classes.txt", "dev.csv", "test.csv", "train.csv"]
    assert (folder / "classes.txt").read_text().splitlines() == ["alpha", "mid", "zeta"]
    assert (folder / "train.csv").read_text().splitlines()[0] == "0,1"
    monkeypatch.setenv("LORALAB_DATA_DIR", str(tmp_path / "store"))
    check = checking.check_dataset(
        reading.files_from_folder(folder),
        get_settings(f"sqlite:///{tmp_path / 'x.db'}"),
        class_names=reading.read_class_names((folder / "classes.txt").read_bytes()),
    )
    assert check.errors == [] and check.warnings == []
    assert check.label_counts["test"] == {"alpha": 29, "mid": 14, "zeta": 57}
