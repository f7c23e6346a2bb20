"""How a run fails, in plain words: errors of our own, out of memory (and the smaller batch to go on with), a disk
that cannot be written."""

from __future__ import annotations

from pathlib import Path

from core.i18n import _, words_of
from core.store.db import Run
from core.training import models


class TrainingError(Exception):
    """A run that cannot go on, in plain words."""


def out_of_memory(e: BaseException) -> bool:
    """A GPU out of memory (torch.OutOfMemoryError), or a CPU allocation that failed."""
    text = str(e).lower()
    import torch  # here, not at the top: pages import this module's errors and must start without torch

    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


WRITE_FAILURES = ("no space left", "file too large", "disk quota", "read-only file system", "permission denied")


def plain_error(e: Exception, run: Run, folder: Path) -> str:
    """What went wrong, for the run's page; `folder` is where the run writes (checkpoints, model)."""
    from core.data.reading import DataError  # here, not at the top: the dashboard's first page needs no CSV reader

    if isinstance(e, TrainingError | models.ModelSourceError | DataError):
        return words_of(e)
    if out_of_memory(e):
        batch = max(1, int(run.config.get("batch_size", 32)) // 2)
        if run.method == "lora":
            return _("Out of memory: try batch size {batch}.", batch=batch)
        return _("Out of memory: try batch size {batch} or LoRA.", batch=batch)
    if isinstance(e, OSError) and e.filename or any(failure in str(e).lower() for failure in WRITE_FAILURES):
        return _(  # safetensors reports a failed write in its own error type, without the file's name
            "Could not save to {where}: {why}. Free some disk space or make that folder writable, then resume the "
            "run or launch it again.",
            where=getattr(e, "filename", None) or folder,
            why=getattr(e, "strerror", None) or e,
        )
    return _(
        "Training stopped with an unexpected error ({kind}: {error}). The full report is in the run's log.",
        kind=type(e).__name__,
        error=e,
    )


def smaller_batch(examples: int, accumulation: int) -> tuple[int, int]:
    """The next way to make updates of `examples` from smaller batches: (batch, accumulation steps) with
    batch x accumulation == examples exactly, so the run's batches and updates stay as configured (16: 8 x 2,
    then 4 x 4; 12: 6 x 2, then 4 x 3; a prime 7: 1 x 7)."""
    steps = next(d for d in range(accumulation + 1, examples + 1) if examples % d == 0)
    return examples // steps, steps
