"""Where things live, from environment variables with defaults that suit one machine.

Every path and URL is made absolute here, once, before anything stores it or passes it to another process (a
worker, a training child, a Ray job), which may start in another folder.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from core.i18n import N_, _

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # core/store/settings.py -> the project


class SettingsError(ValueError):
    """A setting (an environment variable or --db) that cannot be used, in plain words."""


@dataclass(frozen=True)
class Settings:
    db_url: str  # any SQLAlchemy URL; SQLite file beside app.py by default; an SQLite path is always absolute
    data_dir: Path  # stored datasets and run artifacts; the worker is another process, so files live here
    max_upload_mb: int = 200  # a CSV larger than this is refused before it is read
    max_rows: int = 1_000_000  # per split
    max_text_chars: int = 20_000  # per text; a longer cell is almost always the wrong column
    stale_after_s: float = 60.0  # a running run whose heartbeat is older than this has crashed
    checkpoint_every_s: float = 120.0  # a training run saves a checkpoint this often, to resume from after a crash
    model_roots: tuple[Path, ...] = ()  # local model folders are read only under these (and the data folder)
    max_model_mb: float = 2000.0  # a Hugging Face model whose weights are larger is refused before any download
    runner: str = "local"  # where a claimed run trains: "local" (a child process) or "ray" (a Ray job)
    ray_address: str | None = None  # the Ray cluster's dashboard, e.g. http://head:8265 (RAY_ADDRESS)
    ray_gpus: str = "auto"  # GPUs a Ray job reserves: "auto" (1 if the cluster has any GPU, else 0) or a number
    ray_python: str | None = None  # the Python on the Ray nodes that has LoRA Lab installed; None: this one's path
    runs_at_once: int | None = None  # runs trained side by side; None: as many as fit on a GPU (at most 4), 1 on CPU
    device_memory_mb: float | None = None  # the device's memory for estimates; None: measured (GPU total, CPU free)
    device: str = "auto"  # where runs train: "auto" (an NVIDIA GPU, else Apple silicon's, else the CPU) or one named

    @property
    def datasets_dir(self) -> Path:
        return self.data_dir / "datasets"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    def allowed_model_roots(self) -> tuple[Path, ...]:
        return (*self.model_roots, self.data_dir)


def sqlite_path(db_url: str) -> Path | None:
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).resolve()


def absolute_db_url(db_url: str) -> str:
    """The URL with an SQLite file's path made absolute (against this process's folder, where it was typed)."""
    try:
        url = make_url(db_url)
    except ArgumentError:
        raise SettingsError(
            _(
                "'{url}' is not a database URL (--db or LORALAB_DB_URL). Give e.g. sqlite:///runs.db or "
                "postgresql+psycopg://user@host/db.",
                url=db_url,
            )
        ) from None
    db_file = sqlite_path(db_url)
    if db_file is None:
        return db_url
    return url.set(database=str(db_file)).render_as_string(hide_password=False)


# A number setting that cannot be used: (whole numbers only, 0 allowed) -> the sentence that says so
_NOT_A_NUMBER = {
    (True, False): N_("{name} is '{value}': it must be a whole number above 0, or unset ({default})."),
    (True, True): N_("{name} is '{value}': it must be a whole number 0 or more, or unset ({default})."),
    (False, False): N_("{name} is '{value}': it must be a number above 0, or unset ({default})."),
    (False, True): N_("{name} is '{value}': it must be a number 0 or more, or unset ({default})."),
}


def _number(name: str, default: float | None, kind=int, zero: bool = False) -> float | None:
    """A positive number (or 0, where `zero` allows it) from the environment variable `name` (unset or empty: the
    default), or a plain SettingsError naming it."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default if default is None else kind(default)
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        unset = _("measured") if default is None else f"{default:g}"
        raise SettingsError(_(_NOT_A_NUMBER[kind is int, zero], name=name, value=raw, default=unset))
    return value


def get_settings(db_url: str | None = None) -> Settings:
    """Settings from LORALAB_DB_URL / LORALAB_DATA_DIR / LORALAB_MAX_UPLOAD_MB / LORALAB_MAX_ROWS /
    LORALAB_CHECKPOINT_SECONDS / LORALAB_MAX_MODEL_MB /
    LORALAB_MODEL_ROOTS (folders separated by ':'; default: models/ beside app.py) / LORALAB_RUNNER /
    RAY_ADDRESS / LORALAB_RAY_GPUS / LORALAB_RAY_PYTHON / LORALAB_RUNS_AT_ONCE / LORALAB_DEVICE_MEMORY_MB /
    LORALAB_DEVICE. A value that cannot be used raises SettingsError.

    The data folder defaults to `data/` beside the SQLite file, so a test's temporary database gets a
    temporary data folder too.
    """
    db_url = absolute_db_url(db_url or os.environ.get("LORALAB_DB_URL") or f"sqlite:///{PROJECT_ROOT / 'runs.db'}")
    if os.environ.get("LORALAB_DATA_DIR"):
        data_dir = Path(os.environ["LORALAB_DATA_DIR"]).expanduser()
    else:
        db_file = sqlite_path(db_url)
        data_dir = db_file.parent / "data" if db_file else PROJECT_ROOT / "data"
    runner = os.environ.get("LORALAB_RUNNER", "local").strip().lower() or "local"
    if runner not in ("local", "ray"):
        raise SettingsError(_("LORALAB_RUNNER is '{value}': use 'local' or 'ray'.", value=runner))
    device = os.environ.get("LORALAB_DEVICE", "auto").strip().lower() or "auto"
    if device not in ("auto", "cuda", "mps", "cpu"):  # whether this machine has it is core.training.device's to say
        raise SettingsError(_("LORALAB_DEVICE is '{value}': use auto, cuda, mps or cpu.", value=device))
    return Settings(
        db_url=db_url,
        data_dir=data_dir.resolve(),
        max_upload_mb=_number("LORALAB_MAX_UPLOAD_MB", 200),
        max_rows=_number("LORALAB_MAX_ROWS", 1_000_000),
        checkpoint_every_s=_number("LORALAB_CHECKPOINT_SECONDS", 120, float, zero=True),  # 0: at every logged step
        max_model_mb=_number("LORALAB_MAX_MODEL_MB", 2000, float),
        model_roots=tuple(
            Path(p).expanduser().resolve()
            for p in os.environ.get("LORALAB_MODEL_ROOTS", str(PROJECT_ROOT / "models")).split(os.pathsep)
            if p
        ),
        runner=runner,
        ray_address=os.environ.get("RAY_ADDRESS") or None,
        ray_gpus=os.environ.get("LORALAB_RAY_GPUS", "auto").strip().lower() or "auto",
        ray_python=os.environ.get("LORALAB_RAY_PYTHON") or None,
        runs_at_once=_number("LORALAB_RUNS_AT_ONCE", None),
        device_memory_mb=_number("LORALAB_DEVICE_MEMORY_MB", None, float),
        device=device,
    )
