"""The data folder's disk: whose it is, what the history's files take, and deleting runs with their files.

A run keeps its folder (checkpoints with the optimizer's state until it completes, then its model, and its log);
a label job keeps the file it was given and the labelled file. Deleting a run removes its rows (metrics and
predictions go with it: ON DELETE CASCADE), the label jobs made with it, and those folders.

Two databases may share a data folder (a.db and b.db side by side share data/; runs.db deleted to start over). A
folder no row points to may then be another database's, so such leftovers are removed only where the data folder
records this database alone: each database writes its uid (the database_info row) into the folder's MARKER before
it first writes a file there. A folder that held files before it was marked, or whose marker cannot be read, is
never this database's alone: nothing is guessed.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from core.i18n import N_, _, ngettext
from core.store.db import (
    ACTIVE,
    ComparisonGroup,
    DatabaseInfo,
    Dataset,
    LabelJob,
    Run,
    session_factory,
    utcnow,
)
from core.store.settings import Settings
from core.words import size_text

MARKER = "databases.json"  # in the data folder: the databases that keep files there
KEPT_FOLDERS = ("datasets", "runs", "labels")  # where rows point; anything else (locks, logs) is left alone
RECENT_S = 3600.0  # a leftover younger than this may be a file being written before its row is committed: kept

# Why a run still in work cannot be deleted, by its status (one of core.store.db.ACTIVE).
BUSY = {
    "queued": N_("Run {run} is queued: cancel it first, or wait until it ends."),
    "running": N_("Run {run} is running: cancel it first, or wait until it ends."),
}

_marked: set[tuple[str, Path]] = set()  # (database, data folder) pairs this process has recorded


class DeleteRefused(ValueError):
    """What cannot be deleted now, and what to do, in plain words."""


def database_uid(settings: Settings) -> str | None:
    with session_factory(settings.db_url, read_only=True)() as s:
        return s.scalar(select(DatabaseInfo.uid).order_by(DatabaseInfo.id).limit(1))


def _has_files(data_dir: Path) -> bool:
    return any((data_dir / name).is_dir() and any((data_dir / name).iterdir()) for name in KEPT_FOLDERS)


def _read_marker(text: str, data_dir: Path) -> dict:
    """The marker's record; a missing one starts a record (holding files already: their owner is unknown), an
    unreadable one is a record whose owner is unknown."""
    if not text.strip():
        return {"databases": [], "files_before": _has_files(data_dir)}
    try:
        record = json.loads(text)
        if isinstance(record.get("databases"), list):
            return record
    except (ValueError, AttributeError):
        pass
    return {"databases": [], "files_before": True, "unreadable": True}


def use_data_folder(settings: Settings) -> None:
    """Record, before this database first writes a file into its data folder, that it keeps files there."""
    key = (settings.db_url, settings.data_dir)
    if key in _marked:
        return
    uid = database_uid(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.data_dir / MARKER, "a+", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # also held while leftovers are removed: no database joins meanwhile
        f.seek(0)
        record = _read_marker(f.read(), settings.data_dir)
        if uid is None or uid not in [d.get("uid") for d in record["databases"]]:
            where = make_url(settings.db_url).render_as_string(hide_password=True)
            record["databases"].append({"uid": uid, "database": where, "since": utcnow().isoformat()})
            f.seek(0)
            f.truncate()
            f.write(json.dumps(record, indent=1))
            f.flush()
            os.fsync(f.fileno())
    _marked.add(key)


def owned_alone(settings: Settings) -> bool:
    """Whether the data folder records this database, and no other, and no file from before it was marked."""
    try:
        text = (settings.data_dir / MARKER).read_text(encoding="utf-8")
    except OSError:
        return False
    record = _read_marker(text, settings.data_dir) if text.strip() else {"databases": []}
    uid = database_uid(settings)
    return (
        uid is not None
        and not record.get("files_before", True)
        and [d.get("uid") for d in record["databases"]] == [uid]
    )


def folder_bytes(path: Path) -> int:
    """The bytes of every file under path (links not followed); 0 if it is gone."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, __, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:  # removed meanwhile
                pass
    return total


def _inside(settings: Settings, path: Path) -> bool:
    """Only a folder under datasets/, runs/ or labels/ of the data folder is ever removed."""
    try:
        parts = path.resolve().relative_to(settings.data_dir.resolve()).parts
    except ValueError:
        return False
    return len(parts) >= 2 and parts[0] in KEPT_FOLDERS


def run_folders(settings: Settings, run: Run) -> list[Path]:
    """The run's folder, and its model's where that lies elsewhere in the data folder."""
    folders = [run_dir(settings, run)]
    if run.artifact_path:
        model = settings.data_dir / run.artifact_path
        if not model.resolve().is_relative_to(folders[0].resolve()):
            folders.append(model)
    return [f for f in folders if _inside(settings, f)]


def jobs_of(session: Session, run_ids: set[int]) -> list[LabelJob]:
    """The label jobs made with any of the runs."""
    return [j for j in session.scalars(select(LabelJob).order_by(LabelJob.id)) if run_ids & set(j.run_ids or [])]


@dataclass
class Deletion:
    """What deleting some runs removes: their rows, the label jobs made with them, their folders and bytes."""

    run_ids: list[int]
    job_ids: list[int] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)
    bytes: int = 0
    refused: list[str] = field(default_factory=list)  # why it cannot be done now, in plain words


def plan_deletion(session: Session, settings: Settings, run_ids: list[int], lock: bool = False) -> Deletion:
    """What deleting the runs would remove and free, and what stands in the way (a run or file still in work).
    lock: the runs' rows are locked until the transaction ends (PostgreSQL; SQLite's writer holds the database)."""
    wanted = list(dict.fromkeys(run_ids))
    query = select(Run).where(Run.id.in_(wanted))
    runs = {r.id: r for r in session.scalars(query.with_for_update() if lock else query)}
    plan = Deletion(run_ids=[i for i in wanted if i in runs])
    plan.refused += [_("There is no run {run}.", run=i) for i in wanted if i not in runs]
    for run in runs.values():
        if run.status in ACTIVE:
            plan.refused.append(_(BUSY[run.status], run=run.id))
        plan.folders += run_folders(settings, run)
    for job in jobs_of(session, set(runs)):
        if job.status in ACTIVE:
            plan.refused.append(
                _(
                    "The file '{file}' is being labelled with run {runs}: wait until it is done.",
                    file=job.file_name,
                    runs=", ".join(map(str, job.run_ids)),
                )
            )
        plan.job_ids.append(job.id)
        if _inside(settings, settings.data_dir / job.folder):
            plan.folders.append(settings.data_dir / job.folder)
    plan.bytes = sum(folder_bytes(f) for f in plan.folders)
    return plan


def delete_runs(session: Session, settings: Settings, run_ids: list[int]) -> Deletion:
    """Delete the runs: their rows (metrics and predictions with them), the label jobs made with them, comparisons
    left with no run, then their folders. Raises DeleteRefused, deleting nothing, if a run or a file labelled with
    one is still waiting or in work. Returns what was deleted."""
    plan = plan_deletion(session, settings, run_ids, lock=True)  # in the write transaction: nothing starts meanwhile
    if plan.refused:
        session.rollback()
        raise DeleteRefused(" ".join(plan.refused))
    groups = set(session.scalars(select(Run.group_id).where(Run.id.in_(plan.run_ids), Run.group_id.is_not(None))))
    session.execute(delete(LabelJob).where(LabelJob.id.in_(plan.job_ids)))
    session.execute(delete(Run).where(Run.id.in_(plan.run_ids)))
    emptied = [g for g in groups if session.scalar(select(Run.id).where(Run.group_id == g).limit(1)) is None]
    session.execute(delete(ComparisonGroup).where(ComparisonGroup.id.in_(emptied)))
    session.commit()
    for folder in plan.folders:  # rows first: a folder left behind (a file in use) is a leftover, never a dangling row
        shutil.rmtree(folder, ignore_errors=True)
    return plan


@dataclass
class DiskUse:
    """What the history's files take in the data folder, in bytes."""

    runs: dict[int, int]  # by run id: its folder (checkpoints, model, log)
    datasets: int
    labels: int  # files given to label, and the labelled files
    leftovers: list[Path]  # under datasets/, runs/ or labels/, and no row points to them
    leftover_bytes: int
    owned: bool  # the data folder is this database's alone: leftovers can be removed

    @property
    def total(self) -> int:
        return sum(self.runs.values()) + self.datasets + self.labels


def _pointed_to(session: Session, settings: Settings) -> tuple[dict[int, list[Path]], list[Path], list[Path]]:
    runs = {r.id: run_folders(settings, r) for r in session.scalars(select(Run))}
    datasets = [settings.data_dir / p for p in session.scalars(select(Dataset.path)) if p]
    labels = [settings.data_dir / p for p in session.scalars(select(LabelJob.folder)) if p]
    return runs, datasets, labels


def disk_use(session: Session, settings: Settings) -> DiskUse:
    runs, datasets, labels = _pointed_to(session, settings)
    known = {f.resolve() for f in [*datasets, *labels, *(f for fs in runs.values() for f in fs)]}
    leftovers = [
        entry
        for name in KEPT_FOLDERS
        if (settings.data_dir / name).is_dir()
        for entry in sorted((settings.data_dir / name).iterdir())
        if entry.resolve() not in known
    ]
    return DiskUse(
        runs={i: sum(folder_bytes(f) for f in fs) for i, fs in runs.items()},
        datasets=sum(folder_bytes(f) for f in datasets),
        labels=sum(folder_bytes(f) for f in labels),
        leftovers=leftovers,
        leftover_bytes=sum(folder_bytes(f) for f in leftovers),
        owned=owned_alone(settings),
    )


def delete_leftovers(session: Session, settings: Settings) -> tuple[int, int]:
    """Remove what lies under datasets/, runs/ or labels/ with no row pointing to it (and is older than RECENT_S),
    only where the data folder is this database's alone. Returns (entries removed, bytes freed); raises
    DeleteRefused where the folder is, or may be, shared."""
    if not (settings.data_dir / MARKER).is_file():
        raise DeleteRefused(_("Nothing was removed. {why}", why=not_owned_text(settings)))
    with open(settings.data_dir / MARKER, "a+", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # no other database records itself (and writes) while this removes
        if not owned_alone(settings):
            raise DeleteRefused(_("Nothing was removed. {why}", why=not_owned_text(settings)))
        use = disk_use(session, settings)
        old = [p for p in use.leftovers if time.time() - p.lstat().st_mtime > RECENT_S]
        freed = sum(folder_bytes(p) for p in old)
        for path in old:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    return len(old), freed


def not_owned_text(settings: Settings) -> str:
    """Why leftovers are kept, in plain words."""
    return _(
        "Files no row of this database points to are kept: {folder} may hold another database's files (another "
        "database uses it too, or it held files before LoRA Lab recorded whose it is). Remove them by hand once you "
        "know they are not needed.",
        folder=settings.data_dir,
    )


def run_dir(settings: Settings, run: Run) -> Path:
    """The run's own folder; runs recorded before uids (uid None) keep theirs, named by id alone."""
    return settings.runs_dir / (f"{run.id}-{run.uid}" if run.uid else str(run.id))


def disk_text(use: DiskUse) -> str:
    """What the history's files take, in one sentence."""
    return ngettext(
        "The history takes {total} of disk: {n} run {runs} (models, checkpoints, logs), datasets {datasets}, "
        "labelled files {labels}.",
        "The history takes {total} of disk: {n} runs {runs} (models, checkpoints, logs), datasets {datasets}, "
        "labelled files {labels}.",
        len(use.runs),
        total=size_text(use.total),
        runs=size_text(sum(use.runs.values())),
        datasets=size_text(use.datasets),
        labels=size_text(use.labels),
    )


def leftovers_text(use: DiskUse, settings) -> str | None:
    """The files no row points to, and whether they can be removed; None if there are none."""
    if not use.leftovers:
        return None
    n, size = len(use.leftovers), size_text(use.leftover_bytes)
    if use.owned:
        return ngettext(
            "Another {size} lies in {n} folder of the data folder that no run, dataset or labelled file points to: "
            "the data folder is this database's alone; `python -m core delete --leftovers` removes them.",
            "Another {size} lies in {n} folders of the data folder that no run, dataset or labelled file points to: "
            "the data folder is this database's alone; `python -m core delete --leftovers` removes them.",
            n,
            size=size,
        )
    return ngettext(
        "Another {size} lies in {n} folder of the data folder that no run, dataset or labelled file points to. {why}",
        "Another {size} lies in {n} folders of the data folder that no run, dataset or labelled file points to. {why}",
        n,
        size=size,
        why=not_owned_text(settings),
    )


def deletion_text(plan: Deletion) -> str:
    """The question before deleting runs: what goes, and the disk it frees."""
    ids = plan.run_ids
    if len(ids) == 1:
        runs = _("run #{run}", run=ids[0])
    elif len(ids) == 2:
        runs = _("run #{run} and run #{other}", run=ids[0], other=ids[1])
    else:
        runs = ngettext("{n} run", "{n} runs", len(ids))
    if plan.job_ids:
        return ngettext(
            "Delete {runs} for good? Curves, test predictions, checkpoints and models are removed, and {n} labelled "
            "file made with them; this frees {size}. There is no undo.",
            "Delete {runs} for good? Curves, test predictions, checkpoints and models are removed, and {n} labelled "
            "files made with them; this frees {size}. There is no undo.",
            len(plan.job_ids),
            runs=runs,
            size=size_text(plan.bytes),
        )
    return _(
        "Delete {runs} for good? Curves, test predictions, checkpoints and models are removed; this frees {size}. "
        "There is no undo.",
        runs=runs,
        size=size_text(plan.bytes),
    )
