"""The database: migrations, atomic claims under concurrency, readers never blocked by a writer."""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event, func, select, text

from core.data import checking, datasets, reading
from core.jobs.runs import create_run
from core.jobs.worker import claim_next_run
from core.store.db import Base, Metric, Run, get_engine, session_factory, utcnow
from core.store.settings import sqlite_path
from core.training.config import TrainConfig


def test_migrations_build_exactly_the_models_schema(settings):
    engine = get_engine(settings.db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        # SQLAlchemy reads a SQLite foreign key's ON DELETE only from table-level clauses; one added with its column
        # (ALTER TABLE ADD COLUMN, migration 0010) is inline: check its action in SQLite's own list instead.
        fks = {d[1].elements[0].parent.name: d for d in diff if d[0] in ("remove_fk", "add_fk")}
        for column, (_, model_fk) in [(c, d) for c, d in fks.items() if d[0] == "add_fk"]:
            pragma = conn.exec_driver_sql(f"PRAGMA foreign_key_list({model_fk.table})")
            actions = {row[3]: (row[2], row[6]) for row in pragma}  # column: (referred table, on delete)
            assert actions.get(column) == (model_fk.referred_table.name, model_fk.ondelete or "NO ACTION"), actions
            diff = [d for d in diff if not (d[0].endswith("_fk") and d[1].elements[0].parent.name == column)]
        assert diff == [], "the models changed without a migration in core/store/migrations/versions"
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _dataset(settings, csv_folder):
    check = checking.check_dataset(reading.files_from_folder(csv_folder), settings)
    with session_factory(settings.db_url)() as s:
        return datasets.save_dataset(s, settings, check, "tiny")


def _claim_from_threads(claim, threads: int = 4) -> list[list[int]]:
    """Each thread claims until nothing is left; what each one got, in the order it got them."""
    by_claimer: list[list[int]] = [[] for _ in range(threads)]

    def claim_all(mine: list[int]):
        while (row_id := claim()) is not None:
            mine.append(row_id)

    running = [threading.Thread(target=claim_all, args=(mine,)) for mine in by_claimer]
    for t in running:
        t.start()
    for t in running:
        t.join()
    return by_claimer


def test_runs_queued_from_many_threads_are_each_claimed_exactly_once(settings, csv_folder):
    dataset = _dataset(settings, csv_folder)

    def queue(i):
        with session_factory(settings.db_url)() as s:
            return create_run(s, dataset, "m", TrainConfig(seed=i)).id

    with ThreadPoolExecutor(10) as pool:
        queued = sorted(pool.map(queue, range(30)))
    by_claimer = _claim_from_threads(lambda: claim_next_run(settings))
    assert sorted(sum(by_claimer, [])) == queued  # none lost, none twice
    assert all(mine == sorted(mine) for mine in by_claimer)  # each claim takes the oldest run still queued
    with session_factory(settings.db_url, read_only=True)() as s:
        assert s.scalar(select(func.count()).where(Run.status == "running")) == 30


def test_reads_do_not_fail_while_a_writer_holds_the_lock(settings, csv_folder):
    dataset = _dataset(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        run_id = create_run(s, dataset, "m", TrainConfig()).id
    writer = session_factory(settings.db_url)()
    writer.add(Metric(run_id=run_id, step=1, epoch=0.1, name="train_loss", value=1.0))
    writer.flush()  # holds the write lock (BEGIN IMMEDIATE) until commit
    try:
        started = time.monotonic()
        with session_factory(settings.db_url, read_only=True)() as reader:
            assert reader.get(Run, run_id).status == "queued"
            assert reader.scalar(select(func.count(Metric.id))) == 0  # the uncommitted row is not seen
        assert time.monotonic() - started < 10  # it did not wait out the 30 s busy timeout
    finally:
        writer.commit()
        writer.close()
    with get_engine(settings.db_url).connect() as conn:
        assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"


def test_a_write_that_ctrl_c_cuts_short_leaves_no_lock_behind(settings):
    """A KeyboardInterrupt raised while SQLAlchemy reads a statement's result: it closes the connection with the
    statement's cursor still alive in the traceback, and SQLite would keep that transaction's write lock until the
    cursor is freed. The write that handles Ctrl+C (recording the cancel) would then wait for its own lock."""
    with session_factory(settings.db_url).begin() as s:
        s.add(Run(dataset_name="d", method="lora", model_source="m", config={}, status="running"))

    armed = True

    def ctrl_c(conn, cursor, statement, *_):
        nonlocal armed
        if armed and statement.startswith("SELECT"):
            armed = False
            raise KeyboardInterrupt

    engine = get_engine(settings.db_url)
    event.listen(engine, "after_cursor_execute", ctrl_c)
    try:
        with session_factory(settings.db_url).begin() as s:
            s.get(Run, 1).heartbeat_at = utcnow()
        pytest.fail("the write was not interrupted")
    except KeyboardInterrupt:  # the cancel is recorded while Ctrl+C is handled, its traceback held
        other = sqlite3.connect(sqlite_path(settings.db_url), timeout=0)
        try:
            other.execute("BEGIN IMMEDIATE")  # "database is locked" at once if the interrupted write still held it
            other.rollback()
        finally:
            other.close()
        with session_factory(settings.db_url).begin() as s:
            s.get(Run, 1).cancel_requested = True
    finally:
        event.remove(engine, "after_cursor_execute", ctrl_c)


def test_a_database_at_the_newest_revision_opens_without_loading_alembic(settings):
    """Every process (the dashboard's first page, the worker, each CLI command) opens the database: one already at
    the newest revision is read as such, not migrated through Alembic again."""
    import subprocess
    import sys
    from pathlib import Path

    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from core.store.db import MIGRATIONS, newest_revision, schema_revision

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert newest_revision() == ScriptDirectory.from_config(config).get_current_head()  # files named by revision
    engine = get_engine(settings.db_url)
    assert schema_revision(engine) == newest_revision()
    opened = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from core.store.db import open_database; open_database(sys.argv[1]); "
            "print('alembic' in sys.modules)",
            settings.db_url,
        ],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=True,
    )
    assert opened.stdout.strip() == "False"


def test_a_migration_that_copies_the_runs_table_keeps_every_runs_metrics(settings, csv_folder):
    """Batch mode (SQLite) copies `runs` and drops the old table: with foreign keys on, the drop would cascade to
    metrics. Migration 0010's downgrade is such a step; down and up again, every row is still there."""
    from alembic import command

    from core.store.db import migrate, newest_revision, schema_revision

    dataset = _dataset(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        run = create_run(s, dataset, "m", TrainConfig())
        s.add_all(
            [Metric(run_id=run.id, step=i, epoch=0.1 * i, name="train_loss", value=1.0 / (i + 1)) for i in range(5)]
        )
        s.commit()
    engine = get_engine(settings.db_url)
    migrate(engine, lambda config: command.downgrade(config, "0009"))
    assert schema_revision(engine) == "0009"
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM metrics").scalar() == 5
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1  # on again for the connection's next user
    migrate(engine, lambda config: command.upgrade(config, "head"))
    assert schema_revision(engine) == newest_revision()
    with session_factory(settings.db_url)() as s:
        assert s.scalar(select(func.count()).select_from(Metric).where(Metric.run_id == run.id)) == 5
        s.delete(s.get(Run, run.id))  # foreign keys are on again: deleting the run deletes its metrics
        s.commit()
        assert s.scalar(select(func.count()).select_from(Metric)) == 0


def test_claim_oldest_gives_each_queued_row_to_one_claimer_oldest_first(settings):
    """The one claim the worker's queues share (runs, label jobs, probes): two claimers never get the same row."""
    from core.store.db import Probe, claim_oldest

    with session_factory(settings.db_url)() as s:
        s.add_all([Probe(key="k", model_source="m", config={}) for _ in range(20)])
        s.commit()
        queued = sorted(s.scalars(select(Probe.id)))
    by_claimer = _claim_from_threads(lambda: claim_oldest(settings.db_url, Probe))
    assert sorted(sum(by_claimer, [])) == queued  # none lost, none twice
    assert all(mine == sorted(mine) for mine in by_claimer)  # each claim takes the oldest row still queued
    with session_factory(settings.db_url, read_only=True)() as s:
        assert set(s.scalars(select(Probe.status))) == {"running"}
    assert claim_oldest(settings.db_url, Probe) is None


def test_opening_a_database_is_the_one_step_that_migrates_it(tmp_path, monkeypatch):
    """get_engine only connects; open_database brings the schema up to date, once a process."""
    from core.store import db
    from core.store.db import newest_revision, open_database, schema_revision

    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert schema_revision(get_engine(url)) is None  # the cached getter has migrated nothing
    upgrades = []
    real_upgrade = db.upgrade
    monkeypatch.setattr(db, "upgrade", lambda engine: upgrades.append(engine) or real_upgrade(engine))
    engine = open_database(url)
    assert engine is get_engine(url) and schema_revision(engine) == newest_revision()
    assert open_database(url) is engine and len(upgrades) == 1  # opened again: not checked again


def test_every_process_opens_its_database_before_its_first_use(settings, monkeypatch):
    """The worker and the processes it starts (a run's training, a probe, a label job) open the database first; each
    command of the command line does too (tests/reliability/test_cli_errors.py: an empty database)."""
    from core.jobs import probe, worker
    from core.results import labels
    from core.training import train

    class Opened(Exception):
        pass

    opened = []

    def open_database(db_url):
        opened.append(db_url)
        raise Opened

    for module in (probe, worker, labels, train):
        monkeypatch.setattr(module, "open_database", open_database)
    for main in (probe.main, labels.main, train.main):
        with pytest.raises(Opened):
            main(["1", "--db", settings.db_url])
    with pytest.raises(Opened):
        worker.run_worker(settings, exit_when_idle=True)
    assert opened == [settings.db_url] * 4
