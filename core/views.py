"""Read-only queries the dashboard shows as tables and charts: plain data and DataFrames, no Streamlit."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import models, storage
from core.config import METHOD_NAMES, PRESETS, TrainConfig, preset_config
from core.db import ACTIVE, Dataset, Run, RunStatus, utcnow
from core.estimate import duration_text
from core.runs import MIN_TIMED_STEPS, metrics_frame, training_seconds_left  # noqa: F401 (MIN_TIMED_STEPS)

if TYPE_CHECKING:  # pandas and numpy are imported where a table or matrix is made: the Start page, the first a
    import numpy as np  # cold start draws, needs neither
    import pandas as pd

HISTORY_COLUMNS = [
    "run",
    "status",
    "method",
    "settings",
    "dataset",
    "test accuracy",
    "macro-F1",
    "train time",
    "machine while training",
    "pair",
    "trainable params",
    "model",
    "created (UTC)",
]
DATASET_COLUMNS = ["id", "name", "classes", "train", "dev", "test", "runs", "active runs", "created (UTC)"]


class NotComparable(Exception):
    """Runs whose test predictions cannot be lined up, in plain words."""


# One hue per method on every chart, one shade per seed (ColorBrewer's Blues and Oranges): blue and orange are told
# apart by colour-blind viewers and on a projector; the faintest shades are left out, unreadable on white.
METHOD_SHADES = {
    "full": ("#08519C", "#3182BD", "#6BAED6", "#08306B"),
    "lora": ("#A63603", "#E6550D", "#FD8D3C", "#7F2704"),
}
OTHER_SHADES = ("#252525", "#737373", "#A0A0A0")  # a method without a hue of its own

# One plain line per term, for help texts and captions: a teacher can read each aloud.
GLOSSARY = {
    "train set": "Train set: the examples the model learns from, one text and its label each.",
    "dev set": "Dev set: examples kept out of training; the model is checked on them while it learns, "
    "and the version that does best on them is kept.",
    "test set": "Test set: examples kept apart until the end, to score the finished model fairly.",
    "epochs": "Epochs: how many times the model reads the whole train set.",
    "batch size": "Batch size: how many texts the model reads before each correction; lower it if memory runs out.",
    "learning rate": "Learning rate: how big each correction is; too big and training goes wild, too small and "
    "it learns slowly.",
    "warmup": "Warmup: the share of training during which the learning rate rises slowly from zero, so the first "
    "corrections do not spoil what the model already knows.",
    "evaluations per epoch": "Evaluations per epoch: how often, during each pass over the train set, the model is "
    "checked on the dev set.",
    "weight decay": "Weight decay: keeps the weights small, so the model learns less by heart.",
    "max length": "Max length: texts longer than this many tokens (word pieces) are cut.",
    "seed": "Seed: a number that fixes every random choice (order of the texts, starting weights); the same seed "
    "gives the same run again.",
    "full fine-tuning": "Full fine-tuning: every one of the model's weights is adjusted to the new task.",
    "LoRA": "LoRA: the model's weights stay frozen; small add-on weights beside them are trained instead.",
    "LoRA rank": "LoRA rank (r): the size of LoRA's add-on matrices; a larger rank trains more weights.",
    "LoRA alpha": "LoRA alpha: how strongly the add-ons change the model (their effect is scaled by alpha / rank).",
    "LoRA dropout": "LoRA dropout: the share of the add-ons' inputs switched off at random while training, "
    "so they do not learn the train set by heart.",
    "LoRA target layers": "LoRA target layers: the layers of the model that get add-ons (in BERT: query, key, value).",
    "published experiment": "Published experiment: the article this project started from, which fine-tuned "
    "bert-base-chinese to sort Chinese news titles (THUCNews) into 10 classes: 93.7 % with full fine-tuning, "
    "93.25 % with LoRA (r 8, alpha 32, 5 epochs).",
    "accuracy": "Accuracy: the share of test texts given the right label.",
    "macro-F1": "Macro-F1: each class's balance of missed and wrong answers, averaged so that small classes count "
    "as much as big ones (100 % is perfect).",
    "trainable weights": "Trainable weights: the numbers training may change; the rest of the model stays as it was.",
}


SETTINGS = {  # TrainConfig field -> (name on screen, glossary term)
    "epochs": ("Epochs", "epochs"),
    "batch_size": ("Batch size", "batch size"),
    "learning_rate": ("Learning rate", "learning rate"),
    "warmup_ratio": ("Warmup", "warmup"),
    "evals_per_epoch": ("Evaluations per epoch", "evaluations per epoch"),
    "weight_decay": ("Weight decay", "weight decay"),
    "max_length": ("Max length (tokens)", "max length"),
    "seed": ("Seed", "seed"),
    "lora_r": ("LoRA rank", "LoRA rank"),
    "lora_alpha": ("LoRA alpha", "LoRA alpha"),
    "lora_dropout": ("LoRA dropout", "LoRA dropout"),
    "lora_targets": ("LoRA target layers", "LoRA target layers"),
}


def settings_frame(run: Run) -> pd.DataFrame:
    """A run's settings in words, one per row with what it means (LoRA's only for a LoRA run)."""
    import pandas as pd

    rows = []
    for field, (name, term) in SETTINGS.items():
        value = (run.config or {}).get(field)
        if value is None or (field.startswith("lora_") and run.method != "lora"):
            continue
        if field in ("warmup_ratio", "lora_dropout"):
            value = f"{plain_number(100 * value)} %"
        elif isinstance(value, float):
            value = plain_number(value)
        rows.append({"setting": name, "value": str(value), "what it means": GLOSSARY[term].split(": ", 1)[1]})
    return pd.DataFrame(rows)


ENCODINGS = {  # how a file's text encoding is named on screen
    "utf-8": "UTF-8",
    "utf-8-sig": "UTF-8",
    "utf-16": "UTF-16",
    "utf-16-le": "UTF-16",
    "utf-16-be": "UTF-16",
    "gbk": "Chinese (GBK)",
    "gb2312": "Chinese (GBK)",
    "gb18030": "Chinese (GBK)",
    "big5": "Chinese (Big5)",
    "cp1250": "Windows Central European",
    "cp1251": "Windows Cyrillic",
    "cp1252": "Windows Western European",
    "latin_1": "Western European (Latin-1)",
    "iso8859_1": "Western European (Latin-1)",
    "shift_jis": "Japanese (Shift JIS)",
    "cp932": "Japanese (Shift JIS)",
}


def encoding_text(encoding: str | None) -> str:
    """A text encoding in words: 'utf-8-sig' -> 'UTF-8', 'cp1252' -> 'Windows Western European'."""
    key = (encoding or "").lower().replace("-", "_").replace("utf_", "utf-")
    return ENCODINGS.get(key, ENCODINGS.get((encoding or "").lower(), encoding or "unknown"))


def percent(share: float | None) -> str:
    """A share (0-1) as the dashboard writes it everywhere: one decimal, e.g. '73.7 %'."""
    return "–" if share is None else f"{100 * share:.1f} %"


def in_percent(share: float | None) -> float | None:
    """A share as a number of percent, for tables whose column shows it with `ui.PERCENT_COLUMN` ('73.7 %')."""
    return None if share is None else 100 * share


def points(difference: float | None) -> str:
    """A difference of two shares in percentage points, signed: '+1.2 points'."""
    return "–" if difference is None else f"{100 * difference:+.1f} points"


def count(n: int | None) -> str:
    return "–" if n is None else f"{n:,}"


def size_text(n_bytes: int | None) -> str:
    """Disk space as the dashboard writes it: '0.4 MB', '87 MB', '1.2 GB' (1 MB = 2**20 bytes, as model sizes)."""
    if n_bytes is None:
        return "–"
    mb = n_bytes / 2**20
    if not n_bytes:
        return "0 MB"
    if mb >= 1024:
        return f"{mb / 1024:.1f} GB"
    return f"{mb:.0f} MB" if mb >= 10 else f"{mb:.1f} MB"


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def disk_text(use: storage.DiskUse) -> str:
    """What the history's files take, in one sentence."""
    runs = sum(use.runs.values())
    return (
        f"The history takes {size_text(use.total)} of disk: {plural(len(use.runs), 'run')} {size_text(runs)} "
        f"(models, checkpoints, logs), datasets {size_text(use.datasets)}, labelled files {size_text(use.labels)}."
    )


def leftovers_text(use: storage.DiskUse, settings) -> str | None:
    """The files no row points to, and whether they can be removed; None if there are none."""
    if not use.leftovers:
        return None
    said = (
        f"Another {size_text(use.leftover_bytes)} lies in {plural(len(use.leftovers), 'folder')} of the data folder "
        "that no run, dataset or labelled file points to"
    )
    if use.owned:
        return f"{said}: the data folder is this database's alone; `python -m core delete --leftovers` removes them."
    return f"{said}. {storage.not_owned_text(settings)}"


def deletion_text(plan: storage.Deletion) -> str:
    """The question before deleting runs: what goes, and the disk it frees."""
    ids = plan.run_ids
    runs = " and ".join(f"run #{i}" for i in ids) if len(ids) < 3 else plural(len(ids), "run")
    jobs = f", and {plural(len(plan.job_ids), 'labelled file')} made with them" if plan.job_ids else ""
    return (
        f"Delete {runs} for good? Curves, test predictions, checkpoints and models are removed{jobs}; this frees "
        f"{size_text(plan.bytes)}. There is no undo."
    )


def plain_number(x: float) -> str:
    """A small number without scientific notation: 5e-05 -> '0.00005', 1.0 -> '1'."""
    return f"{x:.10f}".rstrip("0").rstrip(".") if x else "0"


def epochs_text(epochs: float | None) -> str:
    if epochs is None:
        return "? epochs"
    return f"{plain_number(float(epochs))} epoch{'' if epochs == 1 else 's'}"


def preset_of(config: dict | None) -> str:
    """The dashboard preset whose settings a run has (its seed aside), else 'own settings'."""
    if config:
        settings = {**TrainConfig.from_dict(config).to_dict(), "seed": None}
        for name in PRESETS:
            if {**preset_config(name, settings["method"]).to_dict(), "seed": None} == settings:
                return name
    return "own settings"


def run_facts(run: Run) -> dict[str, str]:
    """What tells runs apart, in words, in the order a label lists them."""
    config = run.config or {}
    return {
        "method": METHOD_NAMES.get(run.method, run.method),
        "preset": preset_of(config),
        "epochs": epochs_text(config.get("epochs")),
        "seed": f"seed {config.get('seed', '?')}",
        "dataset": run.dataset_name,
        "model": "" if run.model_source == models.BUNDLED else models.describe(run.model_source),
    }


def settings_text(run: Run) -> str:
    """Preset, epochs and seed in words: 'quick demo · 1 epoch · seed 42'."""
    facts = run_facts(run)
    return " · ".join(facts[k] for k in ("preset", "epochs", "seed"))


def run_label(run: Run, among: list[Run] | None = None) -> str:
    """How a run is named across the dashboard: its number, its method and what tells it apart.

    Alone: '#12 LoRA · 5 epochs · seed 42 · BBC News titles (demo)'. Shown with others (`among`, e.g. the runs on
    one chart): only what differs between them, e.g. '#12 LoRA · seed 43', so legends and titles stay short.
    """
    facts = run_facts(run)
    if among and len(among) > 1:
        every = [run_facts(r) for r in among]
        keep = {"method"} | {k for k in facts if len({f[k] for f in every}) > 1}
        if {"preset", "epochs"} <= keep and facts["preset"] != "own settings":
            keep.discard("epochs")  # the preset's name says the epochs
    else:
        keep = {"method", "epochs", "seed", "dataset", "model"}
    return " · ".join([f"#{run.id} {facts['method']}"] + [v for k, v in facts.items() if k in keep - {"method"} and v])


def column_label(run: Run, among: list[Run]) -> str:
    """A run as a table column's header, short enough for six side by side and their texts on a 1024 px screen: its
    number, its method, and its seed where the seeds differ ('#4 LoRA · 43'). The whole run_label goes in the help."""
    seeds = {(r.config or {}).get("seed") for r in among}
    seed = f" · {(run.config or {}).get('seed', '?')}" if len(seeds) > 1 else ""
    return f"#{run.id} {'full' if run.method == 'full' else METHOD_NAMES.get(run.method, run.method)}{seed}"


def run_colours(runs: list[Run]) -> dict[int, str]:
    """One colour per run: its method's hue (full fine-tuning blue, LoRA orange), in a shade by its seed among the
    runs of that method shown together (the lowest seed darkest), so the two methods never look alike."""
    out: dict[int, str] = {}
    for method in dict.fromkeys(r.method for r in runs):
        shades = METHOD_SHADES.get(method, OTHER_SHADES)
        same = sorted({(int((r.config or {}).get("seed") or 0), r.id) for r in runs if r.method == method})
        out |= {run_id: shades[k % len(shades)] for k, (_, run_id) in enumerate(same)}
    return out


BUSY_SHARE = 0.25  # other work used more than a quarter of the machine's CPUs: a run's times are not its own


def machine_busy(run: Run) -> float | None:
    """The share of the machine's CPUs that other work used while the run trained (0: none, 1: all of them): its
    mean load average less its own CPU use; None when not recorded (older runs)."""
    if run.load_average is None or not run.cpu_count:
        return None
    return max(0.0, run.load_average - (run.cpu_percent or 0.0) / 100) / run.cpu_count


def machine_text(run: Run) -> str:
    """How busy the machine was while the run trained, in words for a table."""
    busy = machine_busy(run)
    if busy is None:
        return "not measured"
    if busy <= BUSY_SHARE:
        return "quiet"
    return f"busy: others' work {busy * run.cpu_count:.1f} CPUs, on {run.cpu_count}"


def times_note(runs: list[Run]) -> str | None:
    """Why the training times of these runs are not a fair measure (or not comparable), in plain words; None when
    nothing speaks against them."""
    reasons = []
    devices = sorted({r.device for r in runs if r.device})
    if len(devices) > 1:
        reasons.append(f"they trained on different devices ({', '.join(devices)})")
    for run in runs:
        busy = machine_busy(run)
        if busy is not None and busy > BUSY_SHARE:
            reasons.append(
                f"while run #{run.id} trained, other programs kept the machine busy "
                f"(about {busy * run.cpu_count:.1f} CPUs' worth of work, on {run.cpu_count} CPUs)"
            )
    if not reasons:
        return None
    what = "These times are not comparable" if len(runs) > 1 else "This time is not a fair measure"
    after = "Accuracy, weights and memory are not affected; to compare times, train again when the machine is quiet."
    return f"{what}: {'; '.join(reasons)}. {after}"


UTC_MARK = " (UTC)"  # ends the name of a table's column of stored times; in_time_zone renames it for the viewer


def time_zone(name: str | None) -> ZoneInfo | None:
    """The viewer's time zone from its name (the browser's, e.g. 'Asia/Shanghai'); None when it is not known, or
    not known to this machine: times then stay in UTC, and say so."""
    try:
        return ZoneInfo(name) if name else None
    except (ZoneInfoNotFoundError, ValueError):
        return None


def local_time(at: datetime | None, zone_name: str | None) -> datetime | None:
    """A stored time (UTC, without a zone, as the database keeps it) on the viewer's clock; UTC itself when the
    viewer's zone is not known."""
    zone = time_zone(zone_name)
    if at is None or zone is None:
        return at
    return at.replace(tzinfo=timezone.utc).astimezone(zone).replace(tzinfo=None)


def clock_text(at: datetime, zone_name: str | None, fmt: str = "%H:%M") -> str:
    """A stored time as the viewer reads it: '22:00' on their own clock, '14:00 UTC' when their zone is unknown."""
    return f"{local_time(at, zone_name):{fmt}}" + ("" if time_zone(zone_name) else " UTC")


def in_time_zone(frame: pd.DataFrame, zone_name: str | None) -> pd.DataFrame:
    """A table's stored times (its '... (UTC)' columns) on the viewer's clock, named without '(UTC)'; the table as
    it is when the viewer's zone is unknown."""
    import pandas as pd

    zone = time_zone(zone_name)
    stored = [c for c in frame.columns if str(c).endswith(UTC_MARK)]
    if zone is None or not stored:
        return frame
    frame = frame.copy()
    for column in stored:
        utc = pd.to_datetime(frame[column]).dt.tz_localize("UTC")
        frame[column] = utc.dt.tz_convert(zone).dt.tz_localize(None)
    return frame.rename(columns={c: c.removesuffix(UTC_MARK) for c in stored})


def list_datasets(session: Session) -> list[Dataset]:
    return list(session.scalars(select(Dataset).order_by(Dataset.id.desc())))


def datasets_frame(session: Session) -> pd.DataFrame:
    """Stored datasets, newest first, with how many runs use each (and how many of those are still to finish)."""
    import pandas as pd

    runs = dict(session.execute(select(Run.dataset_id, func.count()).group_by(Run.dataset_id)).all())
    active = dict(
        session.execute(
            select(Run.dataset_id, func.count()).where(Run.status.in_(ACTIVE)).group_by(Run.dataset_id)
        ).all()
    )
    rows = [
        [
            d.id,
            d.name,
            ", ".join(map(str, d.classes)),
            d.sizes.get("train"),
            d.sizes.get("dev"),
            d.sizes.get("test"),
            runs.get(d.id, 0),
            active.get(d.id, 0),
            d.created_at,
        ]
        for d in session.scalars(select(Dataset).order_by(Dataset.id.desc()))
    ]
    return pd.DataFrame(rows, columns=DATASET_COLUMNS)


def active_runs_on(session: Session, dataset_id: int) -> int:
    """How many runs on a dataset are still waiting or training."""
    query = select(func.count()).select_from(Run).where(Run.dataset_id == dataset_id, Run.status.in_(ACTIVE))
    return session.scalar(query)


def history_frame(
    session: Session,
    statuses: list[str] | None = None,
    methods: list[str] | None = None,
    datasets: list[str] | None = None,
) -> pd.DataFrame:
    """Every run, newest first; each filter left empty keeps everything. Accuracy and macro-F1 in percent (shown
    with ui.PERCENT_COLUMN); a pair is named by its other run's number."""
    import pandas as pd

    pairs: dict[str, list[int]] = {}
    for run_id, pair_id in session.execute(select(Run.id, Run.pair_id).where(Run.pair_id.is_not(None))):
        pairs.setdefault(pair_id, []).append(run_id)
    query = select(Run).order_by(Run.id.desc())
    if statuses:
        query = query.where(Run.status.in_(statuses))
    if methods:
        query = query.where(Run.method.in_(methods))
    if datasets:
        query = query.where(Run.dataset_name.in_(datasets))
    rows = []
    for run in session.scalars(query):
        test = run.test_metrics or {}
        rows.append(
            [
                run.id,
                run.status,
                METHOD_NAMES.get(run.method, run.method),
                settings_text(run),
                run.dataset_name,
                in_percent(test.get("accuracy")),
                in_percent(test.get("f1_macro")),
                "" if run.train_seconds is None else duration_text(run.train_seconds),
                machine_text(run) if run.train_seconds is not None else "",
                ", ".join(f"with #{i}" for i in pairs.get(run.pair_id, []) if i != run.id),
                run.trainable_params,
                models.describe(run.model_source),
                run.created_at,
            ]
        )
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


def runs_by_id(session: Session, run_ids: list[int]) -> list[Run]:
    """The runs that exist among `run_ids`, in the order given."""
    found = {r.id: r for r in session.scalars(select(Run).where(Run.id.in_(run_ids)))}
    return [found[i] for i in run_ids if i in found]


def all_runs(session: Session) -> list[Run]:
    return list(session.scalars(select(Run).order_by(Run.id.desc())))


def partners(session: Session, run: Run) -> list[Run]:
    """The other run(s) launched in the same pair."""
    if not run.pair_id:
        return []
    return list(session.scalars(select(Run).where(Run.pair_id == run.pair_id, Run.id != run.id).order_by(Run.id)))


def queue_text(session: Session, run: Run) -> str:
    """Where a queued run stands, in words: which runs train or wait before it (oldest first)."""
    ahead = list(
        session.scalars(
            select(Run.id)
            .where(Run.status.in_(ACTIVE), Run.id != run.id)
            .where((Run.status == RunStatus.RUNNING.value) | (Run.id < run.id))
            .order_by(Run.id)
        )
    )
    if not ahead:
        return "Waiting for the trainer to start it (a few seconds)."
    if len(ahead) == 1:
        return f"Waiting its turn: it starts when run #{ahead[0]} has finished."
    names = ", ".join(f"#{i}" for i in ahead[:-1]) + f" and #{ahead[-1]}"
    # Where several runs train side by side (LORALAB_RUNS_AT_ONCE), it may start before all of them have finished.
    return f"Waiting its turn behind runs {names}: it starts as soon as the trainer has room for it."


def completed_runs(session: Session) -> list[Run]:
    return list(session.scalars(select(Run).where(Run.status == RunStatus.COMPLETED.value).order_by(Run.id.desc())))


def latest_pair(session: Session) -> list[int]:
    """Ids of the most recent pair whose two runs both completed; else the two latest completed runs."""
    pair_id = session.scalar(
        select(Run.pair_id)
        .where(Run.pair_id.is_not(None), Run.status == RunStatus.COMPLETED.value)
        .group_by(Run.pair_id)
        .having(func.count() >= 2)
        .order_by(func.max(Run.id).desc())
        .limit(1)
    )
    query = select(Run.id).where(Run.status == RunStatus.COMPLETED.value)
    if pair_id is not None:
        query = query.where(Run.pair_id == pair_id)
    return sorted(session.scalars(query.order_by(Run.id.desc()).limit(2)))


def any_active(session: Session) -> bool:
    return session.scalar(select(func.count()).select_from(Run).where(Run.status.in_(ACTIVE))) > 0


def overview(session: Session) -> dict[str, int]:
    """Counts for the start page: datasets, and runs by status."""
    by_status = dict(session.execute(select(Run.status, func.count()).group_by(Run.status)).all())
    return {
        "datasets": session.scalar(select(func.count()).select_from(Dataset)),
        "runs": sum(by_status.values()),
        "active": sum(by_status.get(s, 0) for s in ACTIVE),
        "completed": by_status.get(RunStatus.COMPLETED.value, 0),
    }


def progress(run: Run, now: datetime | None = None) -> tuple[float | None, float | None]:
    """Share of steps done and estimated seconds of training left (None while it cannot be known: say
    "estimating"; see core.runs.training_seconds_left)."""
    if not run.total_steps:
        return (1.0 if run.status == RunStatus.COMPLETED.value else None), None
    return min(1.0, run.step / run.total_steps), training_seconds_left(run, now or utcnow())


def curves_frame(session: Session, runs: list[Run]) -> pd.DataFrame:
    """Logged values of the runs with a readable run name, its colour and 'examples' seen (step x batch size)."""
    frame = metrics_frame(session, [r.id for r in runs])
    labels = {r.id: run_label(r, runs) for r in runs}
    batch = {r.id: int(r.config.get("batch_size", 1)) for r in runs}
    frame["run"] = frame["run_id"].map(labels)
    frame["colour"] = frame["run_id"].map(run_colours(runs))
    frame["examples"] = frame["step"] * frame["run_id"].map(batch)
    return frame


def compare_frame(runs: list[Run]) -> pd.DataFrame:
    """One row per run: test metrics and costs, the columns the Compare page shows."""
    import pandas as pd

    rows = []
    for run in runs:
        test = run.test_metrics or {}
        share = run.trainable_params / run.total_params if run.trainable_params and run.total_params else None
        rows.append(
            {
                "run": run_label(run),
                "accuracy": test.get("accuracy"),
                "precision (weighted)": test.get("precision_weighted"),
                "recall (weighted)": test.get("recall_weighted"),
                "macro-F1": test.get("f1_macro"),
                "train time (s)": run.train_seconds,
                "samples/s": run.samples_per_second,
                "trainable params": run.trainable_params,
                "total params": run.total_params,
                "trainable share": share,
                "peak memory (MB)": run.peak_memory_mb,
                "model size (MB)": run.artifact_bytes / 2**20 if run.artifact_bytes else None,
                "tokenizer (MB)": run.tokenizer_bytes / 2**20 if run.tokenizer_bytes else None,
            }
        )
    return pd.DataFrame(rows)


def confusion(run: Run, normalised: bool = False) -> tuple[np.ndarray, list[str]]:
    """The test confusion matrix (rows: true class, columns: predicted), counts or each row's shares."""
    import numpy as np

    test = run.test_metrics or {}
    matrix = np.asarray(test.get("confusion_matrix") or [[]], dtype=float)
    if normalised and matrix.size:
        totals = matrix.sum(axis=1, keepdims=True)
        matrix = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    return matrix, list(test.get("classes") or [])
