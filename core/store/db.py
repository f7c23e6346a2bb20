"""Database models and engine. The database is how the dashboard, the worker and the training processes talk: a run
is a row, its progress rows beside it; the data folder holds only the files those rows point to."""

from __future__ import annotations

import enum
import fcntl
import signal
import threading
import uuid
import weakref
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    create_engine,
    event,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

from core import i18n
from core.i18n import N_, _
from core.store.settings import SettingsError, sqlite_path


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def new_uid() -> str:
    return uuid.uuid4().hex


class RunStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    CRASHED = "crashed"

    @property
    def finished(self) -> bool:
        return self not in (RunStatus.QUEUED, RunStatus.RUNNING)


ACTIVE = (RunStatus.QUEUED.value, RunStatus.RUNNING.value)


class Words(TypeDecorator):
    """Text written for people by one process and read by others later (a run's failure): a sentence of the
    catalogue is stored as its English and values and read back in the reader's language (core.i18n.record); any
    other text as it is."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else i18n.record_text(value)

    def process_result_value(self, value, dialect):
        return None if value is None else i18n.reread_text(value)


class WordsList(TypeDecorator):
    """A JSON list of texts for people (a run's notes), each kept as `Words` keeps one."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else [i18n.record(v) for v in value]

    def process_result_value(self, value, dialect):
        return None if value is None else [i18n.reread(v) for v in value]


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Names the dataset's folder with the id: ids start again at 1 in a new database on the same data folder, a uid
    # does not. None for datasets stored before 0008, whose folders are named by id alone.
    uid: Mapped[str | None] = mapped_column(String(32), default=new_uid)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    path: Mapped[str] = mapped_column(String(500))  # folder under the data dir, relative
    classes: Mapped[list[Any]] = mapped_column(JSON)  # class names; label id = index
    sizes: Mapped[dict[str, Any]] = mapped_column(JSON)  # rows per split
    label_counts: Mapped[dict[str, Any]] = mapped_column(JSON)  # split -> {class name: count}
    warnings: Mapped[list[Any]] = mapped_column(JSON, default=list)
    source: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # file names, columns, encodings

    runs: Mapped[list[Run]] = relationship(back_populates="dataset")


class ComparisonGroup(Base):
    """Full fine-tuning and LoRA launched together, once per seed (first_seed, first_seed + 1, ...): one comparison."""

    __tablename__ = "comparison_groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    repeats: Mapped[int] = mapped_column(Integer)  # pairs in the group, one per seed
    first_seed: Mapped[int] = mapped_column(Integer)

    runs: Mapped[list[Run]] = relationship(back_populates="group", order_by="Run.id")


class Study(Base):
    """A comparison with one setting varied (core.jobs.studies): each point a full-vs-LoRA comparison, its runs
    ordinary runs. `vary` is "lr", "train_size" or "lora_rank"; `grid` holds what is varied: for "lr" each method's
    rates ({"full": [...], "lora": [...]}), else {"values": [...]}; `seeds` is the seeds per point (for "lr", the
    fresh seeds each method's chosen rate is trained on)."""

    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    vary: Mapped[str] = mapped_column(String(20))
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"))
    dataset_name: Mapped[str] = mapped_column(String(200))
    model_source: Mapped[str] = mapped_column(String(500))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)  # TrainConfig's fields the points share
    grid: Mapped[dict[str, Any]] = mapped_column(JSON)
    seeds: Mapped[int] = mapped_column(Integer)
    first_seed: Mapped[int] = mapped_column(Integer)

    runs: Mapped[list[Run]] = relationship(back_populates="study", order_by="Run.id")


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Names the run's folder (checkpoints, model, log) and is checked before a checkpoint is resumed; None for runs
    # recorded before 0008, whose folders are named by id alone (core.store.storage.run_dir).
    uid: Mapped[str | None] = mapped_column(String(32), default=new_uid)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"))
    dataset_name: Mapped[str] = mapped_column(String(200))  # kept when the dataset is deleted
    pair_id: Mapped[str | None] = mapped_column(String(40), index=True)  # full + LoRA launched together
    group_id: Mapped[int | None] = mapped_column(  # the comparison the pair belongs to
        ForeignKey("comparison_groups.id", ondelete="SET NULL"), index=True
    )
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id", ondelete="SET NULL"), index=True)
    # In a learning-rate study: "default" (a default rate, trained to the end), "grid" (another rate tried; the pruner,
    # core.training.pruning, may stop it early) or "final" (the rate chosen on dev, on a fresh seed); "point" in the
    # other studies.
    study_role: Mapped[str | None] = mapped_column(String(10))
    stopped_early: Mapped[bool] = mapped_column(Boolean, default=False)
    method: Mapped[str] = mapped_column(String(10))
    model_source: Mapped[str] = mapped_column(String(500))
    base_revision: Mapped[str | None] = mapped_column(String(100))  # the base's commit, or its weights' SHA-256
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default=RunStatus.QUEUED.value, index=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Words)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)  # the first start; a resume keeps it
    resumed_at: Mapped[datetime | None] = mapped_column(DateTime)  # the latest resume, if any
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    pid: Mapped[int | None] = mapped_column(Integer)
    job_id: Mapped[str | None] = mapped_column(String(100))  # the Ray job's submission id, for a run on a cluster
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int | None] = mapped_column(Integer)
    # Where the training process began timing its steps (after its first step, so start-up is not counted): the
    # time left is estimated from the steps done since then and the time they took.
    timing_step: Mapped[int | None] = mapped_column(Integer)
    timing_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Recorded when training ends
    train_seconds: Mapped[float | None] = mapped_column(Float)
    samples_per_second: Mapped[float | None] = mapped_column(Float)
    trainable_params: Mapped[int | None] = mapped_column(BigInteger)
    total_params: Mapped[int | None] = mapped_column(BigInteger)
    peak_memory_mb: Mapped[float | None] = mapped_column(Float)
    device: Mapped[str | None] = mapped_column(String(200))
    artifact_path: Mapped[str | None] = mapped_column(String(500))  # relative to the data dir
    artifact_bytes: Mapped[int | None] = mapped_column(BigInteger)  # the weight files (runs before 0005: every file)
    tokenizer_bytes: Mapped[int | None] = mapped_column(BigInteger)  # the tokenizer's files saved beside them
    test_metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    notes: Mapped[list[Any]] = mapped_column(WordsList, default=list)  # warnings met while training
    # How busy the machine was while the run trained (its last training process): the mean 1-minute load average,
    # this run's own CPU use in percent of one CPU (200 = two CPUs kept busy) and the machine's CPUs. Times measured
    # while other work kept the CPUs busy are not comparable (core.results.describe.machine_busy).
    load_average: Mapped[float | None] = mapped_column(Float)
    cpu_percent: Mapped[float | None] = mapped_column(Float)
    cpu_count: Mapped[int | None] = mapped_column(Integer)
    cpu_share: Mapped[float | None] = mapped_column(Float)  # of its threads' ready time, on a CPU (core.jobs.estimate)
    score_seconds: Mapped[float | None] = mapped_column(Float)  # scoring the test set, model in memory
    estimate: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # core.jobs.estimate's, taken when it was queued
    # What the training process spent outside training, in seconds: "start" (process start and imports), "load"
    # (tokenizer, data, tokenizing, model), "save", "score" (loading the saved model, scoring, storing predictions).
    stage_seconds: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    dataset: Mapped[Dataset | None] = relationship(back_populates="runs")
    group: Mapped[ComparisonGroup | None] = relationship(back_populates="runs")
    study: Mapped[Study | None] = relationship(back_populates="runs")

    @property
    def run_status(self) -> RunStatus:
        return RunStatus(self.status)


class Probe(Base):
    """A few real training steps the worker measures where this device has no finished run like the one asked
    about (core.jobs.estimate): its time and memory stand in for calibration until such runs exist."""

    __tablename__ = "probes"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(800), index=True)  # device | method | model
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"))
    model_source: Mapped[str] = mapped_column(String(500))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default="queued")  # queued, running, done, failed
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # time_ratio, memory_offset_mb, what it measured
    error: Mapped[str | None] = mapped_column(Words)


class LabelJob(Base):
    """A file of texts to label with one or more finished runs: the worker labels it in chunks, in its own process,
    writing the answers to a CSV as it goes (core.results.labels)."""

    __tablename__ = "label_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    status: Mapped[str] = mapped_column(String(20), default=RunStatus.QUEUED.value, index=True)  # as a run's
    run_ids: Mapped[list[Any]] = mapped_column(JSON)  # the runs whose models label it, in column order
    file_name: Mapped[str] = mapped_column(String(300))  # as uploaded, for the download's name
    folder: Mapped[str] = mapped_column(String(500))  # relative to the data dir: input file, then labelled.csv
    text_column: Mapped[str] = mapped_column(String(300))
    all_probabilities: Mapped[bool] = mapped_column(Boolean, default=False)  # every class's, not only the label's
    rows_total: Mapped[int] = mapped_column(Integer, default=0)
    rows_done: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Words)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)  # renewed by the worker while it labels
    peak_memory_mb: Mapped[float | None] = mapped_column(Float)  # of the labelling process


class DatabaseInfo(Base):
    """One row, written by migration 0012: this database's uid. The data folders it keeps files in record it
    (core.store.storage), so that files no row points to are removed only where a folder is this database's alone."""

    __tablename__ = "database_info"

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(String(32), default=new_uid)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Metric(Base):
    __tablename__ = "metrics"
    __table_args__ = (Index("ix_metrics_run_name_step", "run_id", "name", "step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[float] = mapped_column(Float)
    name: Mapped[str] = mapped_column(String(50))  # train_loss, learning_rate, eval_loss, eval_accuracy, ...
    value: Mapped[float] = mapped_column(Float)


class Prediction(Base):
    __tablename__ = "predictions"
    __table_args__ = (Index("ix_predictions_run_idx", "run_id", "idx"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    idx: Mapped[int] = mapped_column(Integer)  # row of the test split
    text: Mapped[str] = mapped_column(Text)
    true_label: Mapped[int] = mapped_column(Integer)
    pred_label: Mapped[int] = mapped_column(Integer)
    probs: Mapped[list[Any]] = mapped_column(JSON)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never wait for the training writer
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn) -> None:
    # A writing session takes the write lock when its transaction starts (BEGIN IMMEDIATE), so that a
    # read-then-write never fails on a snapshot another writer has made stale; it waits its turn instead.
    # Read-only sessions begin deferred: in WAL mode they never block, and are never blocked by, a writer.
    write = conn.get_execution_options().get("lora_lab_write", True)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _sqlite_end_transaction(dbapi_connection, _record) -> None:
    # SQLAlchemy closes a connection that an exception (Ctrl+C: KeyboardInterrupt) cut short mid-statement. Closed
    # while that statement's cursor lives on (the traceback holds it), SQLite keeps the connection, its transaction
    # and write lock until the cursor is freed: this process's next write (the cancel Ctrl+C asks for) would wait
    # for its own lock, then fail with "database is locked". Rolled back first, nothing stays held.
    if dbapi_connection.in_transaction:
        dbapi_connection.rollback()


MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK = 0x4C6F5241  # a PostgreSQL advisory lock key ("LoRA"): one process migrates at a time


def newest_revision() -> str:
    """The newest migration's revision: each file of migrations/versions is named by its revision (0010_...)."""
    return max(p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("[0-9]*_*.py"))


def schema_revision(engine: Engine) -> str | None:
    """The revision the database is at; None for a new database (or one Alembic has not stamped)."""
    try:
        with engine.connect().execution_options(lora_lab_write=False) as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:
        return None


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest version (Alembic), keeping every row: a runs.db made by an older
    version of LoRA Lab is upgraded in place the first time this version opens it."""
    if schema_revision(engine) == newest_revision():
        return  # up to date, the usual case: no need to load Alembic and every migration (0.3 s of a cold start)
    from alembic import command

    migrate(engine, lambda config: command.upgrade(config, "head"))


def migrate(engine: Engine, step) -> None:
    """Run an Alembic command, step(config), on one connection in one transaction.

    On SQLite, foreign keys are off while it runs and checked before it commits: batch mode alters a table by
    copying it and dropping the old one, and with foreign keys on (as connections open) dropping `runs` would
    delete every run's metrics and predictions (ON DELETE CASCADE)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:  # the pragma is ignored inside a transaction: set on the driver's connection before one begins
            conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    # Workers on several machines may start together: one migrates, the others wait and find it
                    # done. DDL is transactional there, and the lock is released when this transaction ends.
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
                config.attributes["connection"] = conn
                step(config)
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all() if sqlite else []
                if broken:
                    raise RuntimeError(f"a migration left rows that refer to missing rows, not saved: {broken[:5]}")
        finally:
            if sqlite:
                conn.connection.driver_connection.execute("PRAGMA foreign_keys=ON")


_OPENABLE = N_(
    "Give --db (or LORALAB_DB_URL) an SQLite file (sqlite:///runs.db) or a PostgreSQL server "
    "(postgresql+psycopg://user@host/db), whose drivers come with LoRA Lab."
)


def shown_url(db_url: str) -> str:
    """The database URL to show or print: without its password."""
    return make_url(db_url).render_as_string(hide_password=True)


def database_problem(db_url: str, e: Exception) -> str:
    """A database that cannot be reached or used, in plain words: its URL (without the password) and why."""
    reason = (str(getattr(e, "orig", None) or e).strip() or type(e).__name__).splitlines()[0]
    if isinstance(e, (OperationalError, InterfaceError)):
        return _("The database {url} cannot be reached ({reason}).", url=shown_url(db_url), reason=reason)
    return _("The database {url} cannot be used ({reason}).", url=shown_url(db_url), reason=reason)


@lru_cache(maxsize=8)
def get_engine(db_url: str) -> Engine:
    """One engine per URL and process. It migrates nothing: a process opens its database with open_database first.
    A URL that cannot be used (a database LoRA Lab has no driver for) raises SettingsError."""
    if sqlite_path(db_url) is not None:
        engine = create_engine(db_url, connect_args={"timeout": 30, "isolation_level": None})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        event.listen(engine, "close", _sqlite_end_transaction)
        return engine
    url = make_url(db_url)
    if url.drivername == "postgresql":  # a plain postgresql:// URL means psycopg 3, the driver we install
        url = url.set(drivername="postgresql+psycopg")
    # A server that does not answer (a dropped packet, not a refusal) is reported in seconds, not minutes.
    wait = (
        {"connect_timeout": 10}
        if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query
        else {}
    )
    try:
        return create_engine(url, pool_pre_ping=True, connect_args=wait)
    except ModuleNotFoundError as e:  # e.g. mysql:// without its driver, MySQLdb
        raise SettingsError(
            _(
                "The database {url} needs the Python package {package}, which is not installed. {openable}",
                url=shown_url(db_url),
                package=e.name,
                openable=_(_OPENABLE),
            )
        ) from None
    except NoSuchModuleError:  # a name SQLAlchemy knows no database by
        raise SettingsError(
            _(
                "{url}: LoRA Lab knows no database called '{name}'. {openable}",
                url=shown_url(db_url),
                name=url.drivername,
                openable=_(_OPENABLE),
            )
        ) from None


_UP_TO_DATE: weakref.WeakSet[Engine] = weakref.WeakSet()  # the engines open_database has brought up to date


def open_database(db_url: str) -> Engine:
    """Open the database for this process: its engine, with the schema brought up to date (upgrade) the first time
    this process opens it. Every process calls it before its first use of a database: the worker, each command of
    the command line, the dashboard, and the processes that train a run, measure a probe or label a file.

    A database that cannot be opened raises SettingsError (an SQLite file that cannot be created, a database LoRA
    Lab has no driver for) or SQLAlchemy's error (a server that cannot be reached)."""
    engine = get_engine(db_url)
    if engine in _UP_TO_DATE:
        return engine
    db_file = sqlite_path(db_url)
    if db_file is None:
        upgrade(engine)  # PostgreSQL: one process migrates at a time (an advisory lock, core.store.db.migrate)
    else:
        try:
            db_file.parent.mkdir(parents=True, exist_ok=True)
            lock = open(db_file.with_name(db_file.name + ".migrate-lock"), "a")  # noqa: SIM115 - closed below
        except OSError as e:
            raise SettingsError(
                _(
                    "The database file {file} cannot be created ({reason}). Give --db (or LORALAB_DB_URL) an "
                    "SQLite file in a folder you can write to, e.g. sqlite:///runs.db.",
                    file=db_file,
                    reason=e.strerror,
                )
            ) from None
        with lock:  # one process migrates at a time (the dashboard and the worker may start together)
            fcntl.flock(lock, fcntl.LOCK_EX)
            upgrade(engine)
    _UP_TO_DATE.add(engine)
    return engine


def claim_oldest(
    db_url: str, table: type[Run | LabelJob | Probe], fields: Callable[[datetime], dict] | None = None
) -> int | None:
    """Atomically move the oldest queued row of `table` (runs, label jobs, probes: the lowest id whose status is
    queued) to running, also setting `fields(now)`; its id, or None when none is queued. Two claimers never get the
    same row.

    SQLite: the transaction holds the write lock from its start (BEGIN IMMEDIATE). PostgreSQL: the row is locked
    (FOR UPDATE) and rows another claimer has locked are skipped (SKIP LOCKED), so workers never wait on each other;
    the update checks the row is still queued, so a row claimed meanwhile is never claimed twice."""
    queued = RunStatus.QUEUED.value
    with interrupts_deferred(), session_factory(db_url).begin() as s:  # the worker polls: Ctrl+C comes in between
        row_id = s.scalar(
            select(table.id)
            .where(table.status == queued)
            .order_by(table.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if row_id is None:
            return None
        claimed = s.execute(
            update(table)
            .where(table.id == row_id, table.status == queued)
            .values(status=RunStatus.RUNNING.value, **(fields(utcnow()) if fields else {}))
        ).rowcount
    return row_id if claimed == 1 else None


@contextmanager
def interrupts_deferred():
    """Ctrl+C (SIGINT) that arrives in the block raises its KeyboardInterrupt once the block has ended. For the writes
    a process repeats while Ctrl+C may come (a heartbeat, a logged step) and the cancel Ctrl+C asks for: SQLAlchemy is
    not safe against an exception raised at any point of its bookkeeping, and one there can leave a transaction open
    and the write lock held until garbage collection, or turn Ctrl+C into an IllegalStateChangeError. Main thread only
    (Python runs signal handlers there), and only where Ctrl+C raises KeyboardInterrupt (not where it is ignored)."""
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    arrived = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: arrived.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if arrived:
            raise KeyboardInterrupt


def session_factory(db_url: str, read_only: bool = False) -> sessionmaker:
    """Sessions for one unit of work each, on a database this process has opened (open_database). Pass
    read_only=True for queries that write nothing (the dashboard's reads): they never wait for the training
    process's writes."""
    engine = get_engine(db_url).execution_options(lora_lab_write=not read_only)
    return sessionmaker(engine, expire_on_commit=False)
