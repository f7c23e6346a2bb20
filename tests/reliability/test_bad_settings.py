"""Settings, ids and folder names that a command cannot use get one plain line and exit status 2, never a
traceback."""

from __future__ import annotations

import pytest

from core.cli import main
from core.training.config import TrainConfig
from tests.conftest import make_rows, write_csv


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("LORALAB_MAX_UPLOAD_MB", "lots", "LORALAB_MAX_UPLOAD_MB is 'lots'"),
        ("LORALAB_MAX_ROWS", "-5", "LORALAB_MAX_ROWS is '-5'"),
        ("LORALAB_CHECKPOINT_SECONDS", "nan", "LORALAB_CHECKPOINT_SECONDS is 'nan'"),
        ("LORALAB_CHECKPOINT_SECONDS", "-1", "it must be a number 0 or more"),
        ("LORALAB_MAX_MODEL_MB", "0", "LORALAB_MAX_MODEL_MB is '0'"),
        ("LORALAB_RUNS_AT_ONCE", "two", "LORALAB_RUNS_AT_ONCE is 'two'"),
        ("LORALAB_DEVICE_MEMORY_MB", "16GB", "LORALAB_DEVICE_MEMORY_MB is '16GB'"),
        ("LORALAB_RUNNER", "slurm", "LORALAB_RUNNER is 'slurm'"),
        ("LORALAB_DEVICE", "tpu", "LORALAB_DEVICE is 'tpu'"),
        ("LORALAB_DB_URL", "runs.db", "'runs.db' is not a database URL"),
    ],
)
def test_a_setting_that_cannot_be_used_is_named(settings, monkeypatch, capsys, name, value, expected):
    monkeypatch.setenv(name, value)
    args = ["status", "1"] if name == "LORALAB_DB_URL" else ["status", "1", "--db", settings.db_url]
    assert main(args) == 2
    assert expected in capsys.readouterr().err


def test_zero_checkpoint_seconds_means_a_checkpoint_at_every_logged_step(settings, monkeypatch):
    from core.store.settings import get_settings

    monkeypatch.setenv("LORALAB_CHECKPOINT_SECONDS", "0")  # as the resume and disk-full tests use it
    assert get_settings(settings.db_url).checkpoint_every_s == 0


@pytest.mark.parametrize("seed, ok", [(0, True), (2**32 - 1, True), (2**32, False), (-1, False), (10**20, False)])
def test_a_seed_outside_what_the_libraries_take_is_refused(seed, ok):
    problems = TrainConfig(seed=seed).problems()
    assert (problems == []) == ok
    assert ok or "Seed must be a whole number from 0 to 4,294,967,295." in problems


@pytest.mark.parametrize("run_id", ["100000000000000000000", "²", "-1", "0", "3.0"])
def test_a_run_id_that_is_not_one_is_a_usage_error(settings, capsys, run_id):
    for args in (["status", run_id], ["cancel", run_id], ["resume", run_id], ["predict", "--run", run_id, "x"]):
        with pytest.raises(SystemExit) as end:
            main([*args, "--db", settings.db_url])
        assert end.value.code == 2
        assert "is not a run id" in capsys.readouterr().err


def test_csvs_in_a_folder_with_dots_in_its_name_are_stored(settings, tmp_path, tiny_model, capsys):
    folder = tmp_path / "news..v2"
    folder.mkdir()
    for split, (n, seed) in {"train": (24, 1), "dev": (9, 2), "test": (9, 3)}.items():
        write_csv(folder / f"{split}.csv", make_rows(n, seed))
    files = [a for s in ("train", "dev", "test") for a in (f"--{s}", str(folder / f"{s}.csv"))]
    code = main(["submit", *files, "--model", tiny_model, "--seed", "7", "--db", settings.db_url])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert main(["status", out.out.strip(), "--json", "--db", settings.db_url]) == 0
    assert '"dataset": "news-v2-' in capsys.readouterr().out

    code = main(["submit", *files, "--model", tiny_model, "--seed", str(2**32), "--db", settings.db_url])
    assert code == 2 and "Seed must be" in capsys.readouterr().err
