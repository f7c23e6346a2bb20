"""The runner setting without any server: a run that cannot start where the settings say fails in plain words."""

from __future__ import annotations

import dataclasses

import pytest

from core.jobs.runners import death_reason, train_command
from core.jobs.runs import create_run
from core.jobs.worker import supervise
from core.store.db import RunStatus, session_factory
from core.training.config import TrainConfig


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"runner": "slurm"}, "LORALAB_RUNNER is 'slurm': use 'local' or 'ray'"),
        ({"runner": "ray", "ray_address": None}, "RAY_ADDRESS is not set"),
        ({"runner": "ray", "ray_address": "http://127.0.0.1:9"}, "Could not reach the Ray cluster"),
    ],
)
def test_a_run_that_cannot_start_where_the_settings_say_fails_in_plain_words(
    sqlite_lab, csv_folder, changes, expected
):
    pytest.importorskip("ray.job_submission", reason="Ray is not installed: pip install -e '.[ray]'")
    dataset = sqlite_lab.store(csv_folder)
    with session_factory(sqlite_lab.settings.db_url)() as s:
        run = create_run(s, dataset, "m", TrainConfig(), status=RunStatus.RUNNING)  # as claimed
    assert supervise(dataclasses.replace(sqlite_lab.settings, **changes), run.id) == RunStatus.FAILED
    assert expected in sqlite_lab.run(run.id).error


def test_death_reasons_read_signals_from_exit_codes_and_shells(settings):
    assert "killed (SIGKILL)" in death_reason(-9, "log")
    assert "killed (SIGKILL)" in death_reason(137, "log")  # what a shell reports for a process it ran
    assert "killed (SIGTERM)" in death_reason(143, "log")
    assert "exited (code 1)" in death_reason(1, "train.log") and "train.log" in death_reason(1, "train.log")
    assert train_command("python", settings, 7) == [
        "python",
        "-m",
        "core.training.train",
        "7",
        "--db",
        settings.db_url,
    ]
