"""Datasets kept in the data folder: saving a checked dataset whole, finding it again, loading a split, deleting it,
and the bundled demo."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.data.checking import DatasetCheck, check_dataset, rows_of, split_name
from core.data.reading import SPLITS, DataError, SplitFile, files_from_folder, read_class_names
from core.i18n import N_, _
from core.store import storage
from core.store.db import Dataset, new_uid
from core.store.settings import PROJECT_ROOT, Settings

DEMO_DIR = PROJECT_ROOT / "assets" / "demo"  # BBC News titles, 5 classes, in the seed layout
DEMO_NAME = N_("BBC News titles (demo)")  # stored in the language of whoever adds it: _(DEMO_NAME)


def content_hash(check: DatasetCheck, chunk: int = 100_000) -> str:
    """The same hash as the whole splits' CSV text, computed a chunk of rows at a time."""
    h = hashlib.sha256(json.dumps(check.classes, ensure_ascii=False).encode())
    for split in SPLITS:
        df = check.splits[split]
        for start in range(0, max(len(df), 1), chunk):
            h.update(df.iloc[start : start + chunk].to_csv(index=False, header=start == 0).encode())
    return h.hexdigest()


def save_dataset(session: Session, settings: Settings, check: DatasetCheck, name: str) -> Dataset:
    """Store a checked dataset: files written to a temporary folder and moved into place, then the row committed.

    A failure at any point leaves neither files nor a row behind.
    """
    if not check.ok:
        raise DataError(check.errors or [_("The dataset has not been checked.")])
    name = name.strip()
    if not name:
        raise DataError(_("Give the dataset a name."))
    if len(name) > 100 or ".." in name or any(c in name for c in "/\\") or not name.isprintable():
        raise DataError(
            _(
                "The dataset name '{name}' cannot be used: use up to 100 letters, digits, spaces, '-' or '_', "
                "without '/', '\\' or '..'.",
                name=name[:100],
            )
        )
    if session.scalar(select(Dataset.id).where(Dataset.name == name)) is not None:
        raise DataError(_("A dataset named '{name}' already exists. Choose another name.", name=name))
    storage.use_data_folder(settings)  # the data folder records this database before it holds its files
    settings.datasets_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=settings.datasets_dir))
    final = None
    try:
        for split in SPLITS:
            # Every text in quotes: a bare carriage return (or any line break) inside one stays part of the text.
            path = tmp / f"{split}.csv"
            check.splits[split].to_csv(path, index=False, encoding="utf-8", quoting=csv.QUOTE_NONNUMERIC)
            _check_stored(path, check.splits[split], check.source.get(split, {}).get("file", split))
        (tmp / "classes.json").write_text(json.dumps(check.classes, ensure_ascii=False), encoding="utf-8")
        dataset = Dataset(
            uid=new_uid(),
            name=name,
            content_hash=content_hash(check),
            path="",
            classes=check.classes,
            sizes={s: len(check.splits[s]) for s in SPLITS},
            label_counts=check.label_counts,
            warnings=check.warnings,
            source=check.source,
        )
        session.add(dataset)
        session.flush()  # assigns the id
        # Named by id and uid: ids start again at 1 in a new database on the same data folder, and an existing folder
        # (another database's dataset) is never replaced.
        target = settings.datasets_dir / f"{dataset.id}-{dataset.uid}"
        if target.exists():
            raise DataError(_("{folder} already exists; nothing was saved. Try again.", folder=target))
        tmp.rename(target)
        final = target
        dataset.path = str(final.relative_to(settings.data_dir))
        session.commit()
        return dataset
    except BaseException:
        session.rollback()
        shutil.rmtree(tmp, ignore_errors=True)
        if final is not None:
            shutil.rmtree(final, ignore_errors=True)
        raise


def find_same_dataset(session: Session, check: DatasetCheck) -> Dataset | None:
    return session.scalars(select(Dataset).where(Dataset.content_hash == content_hash(check))).first()


def _read_stored(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"text": str, "label": int}, keep_default_na=False, encoding="utf-8")


def _check_stored(path: Path, expected: pd.DataFrame, name: str) -> None:
    """Read a stored split back as training will, and refuse to store it unless every row comes back as it was."""
    try:
        back = _read_stored(path)
    except (ValueError, pd.errors.ParserError) as e:
        raise DataError(
            _("{file} could not be stored so that it reads back ({why}). Nothing was saved.", file=name, why=e)
        ) from None
    if len(back) != len(expected):
        raise DataError(
            _(
                "{file} read back with {rows} rows instead of {expected}. Nothing was saved.",
                file=name,
                rows=len(back),
                expected=len(expected),
            )
        )
    # Compared column against column (in Arrow), not row by row in Python.
    texts_same = back["text"].reset_index(drop=True).eq(expected["text"].reset_index(drop=True))
    same = texts_same.to_numpy(dtype=bool) & (back["label"].to_numpy() == expected["label"].to_numpy())
    differ = np.flatnonzero(~same)
    if len(differ):
        raise DataError(
            _(
                "{file} {rows}: the text did not read back as it was stored, so nothing was saved. "
                "Remove unusual control characters from these texts and upload again.",
                file=name,
                rows=rows_of(pd.Index(differ)),
            )
        )


def load_split(settings: Settings, dataset: Dataset, split: str) -> pd.DataFrame:
    path = settings.data_dir / dataset.path / f"{split}.csv"
    if not path.is_file():
        raise DataError(
            _(
                "The {split} split of dataset '{name}' is missing: no file at {path}. When runs train on other "
                "machines (a Ray cluster), LORALAB_DATA_DIR must be a folder every machine mounts at the same path.",
                split=split_name(split),
                name=dataset.name,
                path=path,
            )
        )
    return _read_stored(path)


def delete_dataset(session: Session, settings: Settings, dataset: Dataset) -> None:
    """Remove the row, then the files. Runs keep their history (dataset name is copied on the run)."""
    folder = settings.data_dir / dataset.path
    session.delete(dataset)
    session.commit()
    shutil.rmtree(folder, ignore_errors=True)


def demo_files() -> tuple[dict[str, SplitFile], list[str] | None]:
    """The bundled demo set: its three CSVs and its class names."""
    return files_from_folder(DEMO_DIR), read_class_names((DEMO_DIR / "classes.txt").read_bytes())


def add_demo_dataset(session: Session, settings: Settings) -> Dataset:
    """Store the demo set (or return it if the same data is stored already), so a first run needs no upload."""
    files, names = demo_files()
    check = check_dataset(files, settings, class_names=names)
    existing = find_same_dataset(session, check)
    if existing is not None:
        return existing
    name = demo = _(DEMO_NAME)
    taken = set(session.scalars(select(Dataset.name)))
    for i in range(2, 1000):
        if name not in taken:
            break
        name = f"{demo} {i}"
    return save_dataset(session, settings, check, name)
