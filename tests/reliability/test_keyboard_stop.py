"""Ctrl+C in the terminal (SIGINT to the whole process group: the command and the training process it started)
ends the run `cancelled`, as a stop asked for, for `core train` and for `core worker`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from core.cli import main
from tests.helpers import ROOT, get_run, metric_count, start_worker, wait_for


def splits(folder) -> list[str]:
    return [arg for s in ("train", "dev", "test") for arg in (f"--{s}", str(folder / f"{s}.csv"))]


def as_a_terminal_starts_it() -> None:
    """A command typed in a terminal takes SIGINT's default action. One started from a script's background job (as
    a CI runner may start the tests) inherits SIGINT ignored, and Ctrl+C could not reach it at all."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ctrl_c(process: subprocess.Popen, settings, run_id: int) -> None:
    """Once the run has logged a training step, what a terminal sends on Ctrl+C."""
    wait_for(lambda: metric_count(settings, run_id) > 0, timeout=180, what="the first logged step")
    os.killpg(process.pid, signal.SIGINT)
    process.wait(timeout=120)


def test_ctrl_c_on_core_train_ends_the_run_cancelled(settings, csv_folder, tiny_model):
    command = [sys.executable, "-m", "core", "train", *splits(csv_folder), "--model", tiny_model, "--epochs", "100"]
    process = subprocess.Popen(
        [*command, "--db", settings.db_url],
        cwd=ROOT,
        env={**os.environ, "LORALAB_DATA_DIR": str(settings.data_dir)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal gives a command
        preexec_fn=as_a_terminal_starts_it,
    )
    ctrl_c(process, settings, 1)
    stderr = process.stderr.read()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    run = get_run(settings, 1)
    assert (run.status, run.error) == ("cancelled", None)
    assert run.finished_at is not None


def test_ctrl_c_on_core_worker_ends_the_run_cancelled(settings, csv_folder, tiny_model, capsys):
    args = ["submit", *splits(csv_folder), "--model", tiny_model, "--epochs", "100", "--db", settings.db_url]
    assert main(args) == 0
    run_id = int(capsys.readouterr().out)
    worker = start_worker(settings, start_new_session=True, preexec_fn=as_a_terminal_starts_it)
    ctrl_c(worker, settings, run_id)
    assert worker.returncode == 130
    run = get_run(settings, run_id)
    assert (run.status, run.error) == ("cancelled", None)
    assert run.finished_at is not None
