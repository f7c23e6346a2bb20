"""Shared fixtures: a temporary database and data folder, a tiny BERT built in a temporary folder, small CSVs."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

from core.store.db import open_database
from core.store.settings import get_settings
from tests.helpers import save_bert

WORDS = {
    0: ["goal", "match", "team", "coach", "league", "striker", "cup", "score"],
    1: ["bank", "shares", "profit", "market", "stocks", "investor", "tax", "price"],
    2: ["phone", "software", "robot", "chip", "internet", "laptop", "code", "app"],
}
CHINESE = {0: ["足球", "比赛", "球队"], 1: ["银行", "股票", "市场"], 2: ["手机", "软件", "芯片"]}
FILLER = ["the", "a", "new", "big", "after", "today", "news", "report", "says", "week"]


def make_rows(n: int, seed: int, chinese: bool = False) -> list[tuple[str, int]]:
    """Short texts whose label is told by a keyword: a tiny model learns them in a few hundred steps."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 3
        words = rng.sample(FILLER, 3) + rng.sample(WORDS[label], 2)
        rng.shuffle(words)
        text = " ".join(words)
        if chinese:
            text = rng.choice(CHINESE[label]) + "新闻：" + text
        rows.append((f"{text} {i}", label))
    return rows


def write_csv(path: Path, rows, header=("0", "1"), encoding="utf-8") -> Path:
    with open(path, "w", newline="", encoding=encoding) as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(autouse=True)
def model_roots(tmp_path_factory, monkeypatch):
    """Model folders built by tests live under pytest's temporary folder: let the server read models there."""
    monkeypatch.setenv("LORALAB_MODEL_ROOTS", str(tmp_path_factory.getbasetemp()))


@pytest.fixture
def settings(tmp_path, monkeypatch):
    """A real SQLite file (WAL) and data folder in a temporary directory; never the user's runs.db."""
    db = tmp_path / "test-runs.db"
    monkeypatch.setenv("LORALAB_DB_URL", f"sqlite:///{db}")
    monkeypatch.delenv("LORALAB_DATA_DIR", raising=False)
    settings = get_settings()
    open_database(settings.db_url)  # as every process does before its first use of a database
    return settings


@pytest.fixture
def csv_folder(tmp_path) -> Path:
    folder = tmp_path / "csvs"
    folder.mkdir()
    write_csv(folder / "train.csv", make_rows(96, 1))
    write_csv(folder / "dev.csv", make_rows(24, 2))
    write_csv(folder / "test.csv", make_rows(24, 3))
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A tiny BERT (about 20 thousand parameters) saved with save_pretrained, loaded through the real code."""
    from transformers import BertTokenizer

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += sorted({w for ws in WORDS.values() for w in ws} | set(FILLER))
    vocab += sorted({ch for ws in CHINESE.values() for w in ws for ch in w} | set("新闻：") | set("0123456789"))
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)
    return save_bert(folder, tokenizer)
