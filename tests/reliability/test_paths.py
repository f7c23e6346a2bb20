"""Commands run from another folder, against a database that is not the default one: every path and URL is made
absolute once, in the settings, so the worker and the training process find the same database and files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from core.cli import main

ROOT = Path(__file__).resolve().parent.parent.parent


def test_every_command_with_a_relative_database_from_another_folder(
    tmp_path, csv_folder, tiny_model, monkeypatch, capsys
):
    """Each command given `--db sqlite:///rel.db` in another folder reads and writes that database and its data
    folder, and so do the worker and the training process it starts (which run in the project folder)."""
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(tiny_model, elsewhere / "models" / "tiny")
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("LORALAB_DB_URL", raising=False)
    monkeypatch.delenv("LORALAB_DATA_DIR", raising=False)
    # The only model root: a finished run's model is readable only through the data folder of this database.
    monkeypatch.setenv("LORALAB_MODEL_ROOTS", str(elsewhere / "models"))
    assert not (ROOT / "rel.db").exists()
    splits = [arg for s in ("train", "dev", "test") for arg in (f"--{s}", str(csv_folder / f"{s}.csv"))]
    run_args = [*splits, "--method", "full", "--model", "models/tiny", "--epochs", "1", "--db", "sqlite:///rel.db"]

    def cli(*args) -> tuple[int, str, str]:
        code = main([*args, "--db", "sqlite:///rel.db"] if args[0] not in ("train", "submit") else list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    code, out, err = cli("train", *run_args, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "completed", result
    assert result["model"] == str(elsewhere / "models" / "tiny"), "a model folder is stored as an absolute path"
    assert (elsewhere / "rel.db").is_file() and (elsewhere / "data" / "runs").is_dir()
    assert not (ROOT / "rel.db").exists(), "no database appears in the project folder"
    run = str(result["run_id"])

    code, out, err = cli("status", run, "--json")
    assert code == 0 and json.loads(out)["test"] == result["test"]
    code, out, err = cli("predict", "--run", run, "the striker scored a goal", "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["label"] in answer["probabilities"]
    (elsewhere / "new.txt").write_text("the striker scored a goal\nshares fell at the bank\n", encoding="utf-8")
    code, out, err = cli("predict", "--run", run, "--file", "new.txt", "--out", "labelled.csv")
    assert code == 0, err
    assert len((elsewhere / "labelled.csv").read_text(encoding="utf-8").splitlines()) == 3
    code, out, err = cli("export", run, "--out", "exported")
    assert code == 0, err
    assert (elsewhere / "exported" / "README.md").is_file()

    code, out, err = cli("submit", *run_args)
    assert code == 0, err
    queued = out.strip()
    assert cli("cancel", queued)[1].strip().endswith("cancelled")
    code, out, err = cli("resume", queued)
    assert code == 2 and "no checkpoint" in err

    code, out, err = cli("submit", *run_args)
    queued = out.strip()
    assert cli("worker", "--exit-when-idle")[0] == 0
    code, out, err = cli("status", queued, "--json")
    assert json.loads(out)["status"] == "completed", out
    assert not (ROOT / "rel.db").exists()
