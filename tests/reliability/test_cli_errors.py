"""Every command, run as a user runs it, with arguments it cannot use (a database that is down, has no driver or
cannot be created; run ids that do not exist; files and folders that are missing): one plain line, exit status 2,
never a traceback, never the database's password. The commands are read from the parser, so a new one is covered."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from core import cli

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "hunter2-secret"
AT_ONCE = 4  # subprocesses at a time: each imports the engine


def commands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def plain_args(command: argparse.ArgumentParser, tmp: Path) -> list[str]:
    """The fewest arguments the command takes: 1 for each id, a new path for each file it writes."""
    args = []
    for action in command._actions:
        if not action.option_strings and action.nargs != "?":
            args += ["1", "2"] if action.nargs == "+" else ["1"]
        elif action.required:
            takes_id = action.type in (cli.run_id, int)
            args += [action.option_strings[0], "1" if takes_id else str(tmp / "new-folder" / "out")]
    return args


def bad_databases(tmp: Path) -> dict[str, str]:
    (tmp / "a-file").write_text("not a folder")
    (tmp / "notes.db").write_text("a text file, not a database\n" * 200)
    return {
        "server down": f"postgresql+psycopg://lab:{PASSWORD}@127.0.0.1:1/lab",
        "no driver": f"mysql://lab:{PASSWORD}@127.0.0.1/lab",
        "unknown kind": f"nosuchdb://lab:{PASSWORD}@127.0.0.1/lab",
        "folder cannot be made": f"sqlite:///{tmp / 'a-file' / 'runs.db'}",
        "not a database": f"sqlite:///{tmp / 'notes.db'}",
    }


def run_all(argvs: list[list[str]], tmp: Path) -> list[subprocess.CompletedProcess]:
    env = {**os.environ, "LORALAB_DATA_DIR": str(tmp / "data")}
    env.pop("LORALAB_DB_URL", None)

    def one(argv):
        return subprocess.run(
            [sys.executable, "-m", "core", *argv], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env
        )

    with ThreadPoolExecutor(AT_ONCE) as pool:
        return list(pool.map(one, argvs))


def assert_plain(argv: list[str], done: subprocess.CompletedProcess, *expected: str) -> None:
    said = " ".join(argv)
    assert "Traceback" not in done.stderr, f"{said}\n{done.stderr}"
    assert done.returncode == 2, f"{said}: exit {done.returncode}\n{done.stderr}"
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, f"{said}\n{done.stderr}"  # one line (the worker logs its start too)
    assert PASSWORD not in done.stderr + done.stdout, said
    for words in expected:
        assert words in errors[0], f"{said}: {errors[0]}"


def test_every_command_names_a_database_it_cannot_use_in_one_line(tmp_path):
    # Every command meets the three failures the command line showed tracebacks for; status meets every kind (they
    # all fail where each command opens the database, and a subprocess costs a second).
    cases = [
        (name, what, [name, *plain_args(command, tmp_path), "--db", url])
        for name, command in commands().items()
        for what, url in bad_databases(tmp_path).items()
        if name == "status" or what in ("server down", "no driver", "folder cannot be made")
    ]
    expected = {
        "server down": ("postgresql+psycopg://lab:***@127.0.0.1:1/lab cannot be reached", "refused"),
        "no driver": ("needs the Python package MySQLdb, which is not installed", "sqlite:///runs.db"),
        "unknown kind": ("knows no database called 'nosuchdb'",),
        "folder cannot be made": ("a-file",),
        "not a database": ("notes.db cannot be used (file is not a database)",),
    }
    for (name, what, argv), done in zip(cases, run_all([argv for _, _, argv in cases], tmp_path)):
        assert_plain(argv, done, *expected[what])


def test_every_command_names_missing_runs_files_and_folders_in_one_line(tmp_path):
    db = f"sqlite:///{tmp_path / 'runs.db'}"  # an empty database: no run, no group
    missing = str(tmp_path / "missing.csv")
    cases = [  # the fewest arguments: run 1 (or group 1) does not exist; train, submit, estimate lack their files
        ([name, *plain_args(command, tmp_path)], "")
        for name, command in commands().items()
        # worker and disk take no run id and no file: the worker would wait for runs, disk rightly reports 0 MB
        if name not in ("worker", "disk")
    ]
    cases += [  # a missing output folder of predict --file: tests/test_labels.py (it needs a finished run)
        (["compare", "999"], "There is no comparison group 999"),
        (["compare", "998", "999"], "There is no run 998"),
        (["train", "--data", missing], "missing.csv"),
        (["submit", "--train", missing, "--dev", missing, "--test", missing], "missing.csv"),
        (["estimate", "--data", str(tmp_path)], str(tmp_path)),  # a folder, not a file
    ]
    argvs = [[*argv, "--db", db] for argv, _ in cases]
    for argv, (_, words), done in zip(argvs, cases, run_all(argvs, tmp_path)):
        assert_plain(argv, done, words)


def test_an_unexpected_failure_is_one_line_and_its_traceback_is_kept_for_a_report(settings, monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("a bug in a command")

    monkeypatch.setattr(cli, "cmd_status", broken)
    assert cli.main(["status", "1", "--db", settings.db_url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unexpected RuntimeError: a bug in a command. This is a bug in LoRA Lab")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    report = Path(err.strip().rsplit(" ", 1)[-1].rstrip("."))
    try:
        assert "Traceback" in report.read_text() and "a bug in a command" in report.read_text()
    finally:
        report.unlink()


def test_ctrl_c_still_exits_130(settings, monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_status", interrupted)
    assert cli.main(["status", "1", "--db", settings.db_url]) == 130
    assert capsys.readouterr().err == "interrupted\n"
