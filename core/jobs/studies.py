"""Studies: a full-vs-LoRA comparison with one setting varied, each point a comparison, every run an ordinary run
(history, live curves, resume, the worker's queue). What they found is core/results/studies.py's.

- "lr" (learning rate): each method tries its own grid of rates on the first seed. The default rates (what the Train
  page launches) go first and always train to the end; the other rates may be stopped early by the pruner
  (core.training.pruning). Once all of a method's rates have ended, the rate with the best dev accuracy is trained on
  `seeds` fresh seeds (first_seed + 1, ...), never the seed it was chosen on: the tuned verdict compares those, the
  default verdict the two default rates. `advance` queues them, called as each of the study's runs ends.
- "train_size": at each size, `seeds` pairs trained on the same nested, stratified subset of the training rows
  (core.data.splitting.nested_rows), scored on the same dev and test sets.
- "lora_rank": LoRA at each rank on `seeds` seeds; full fine-tuning once a seed, the line the ranks are held against.

Pairs are launched together as in a comparison (one pair id: full fine-tuning and LoRA on one seed); in a rank study
the full run of a seed shares its pair id with that seed's LoRA run at every rank, and a rank's verdict pairs it with
the one at that rank (core.results.studies.verdicts).
"""

from __future__ import annotations

import logging
import math

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.i18n import _, ngettext, number
from core.jobs.runs import MAX_REPEATS, ConfigError, create_run
from core.results import studies as found
from core.store.db import Dataset, Run, RunStatus, Study, session_factory
from core.store.settings import Settings
from core.training import models
from core.training.config import DEFAULT_LEARNING_RATES, TrainConfig, problems_of

log = logging.getLogger("lora_lab.studies")

# Each method's rates by default: five a method on a log scale, each method's default among them (LoRA's adapters
# start at zero and need steps about ten times larger: the LoRA paper's rates, and the article's 5e-4).
DEFAULT_GRIDS = {"full": [1e-5, 5e-5, 1e-4, 2e-4, 5e-4], "lora": [1e-4, 5e-4, 1e-3, 3e-3, 1e-2]}
DEFAULT_SIZES = [100, 250, 500, 1000]  # and every row
DEFAULT_RANKS = [1, 2, 4, 8, 16, 64]
MAX_VALUES = 10


def default_values(vary: str, train_rows: int) -> list:
    """The values a study tries unless told: sizes below the training set's and all of it; the ranks."""
    if vary == "train_size":
        return [n for n in DEFAULT_SIZES if n < train_rows] + [train_rows]
    if vary == "lora_rank":
        return list(DEFAULT_RANKS)
    raise ValueError(vary)


def _check_values(vary: str, values: list, dataset: Dataset) -> list[str]:
    setting = _(found.VARY_NAMES[vary])
    if not values:
        return [_("Give at least one {setting} to try.", setting=setting)]
    if len(values) > MAX_VALUES:
        return [_("Try at most {most} values of the {setting} in one study.", most=MAX_VALUES, setting=setting)]
    if vary == "lr":
        return [] if all(0 < v < 1 for v in values) else [_("Learning rates must be more than 0 and less than 1.")]
    if any(int(v) != v for v in values):
        if vary == "train_size":
            return [_("Training-set sizes must be whole numbers.")]
        return [_("LoRA ranks must be whole numbers.")]
    if vary == "lora_rank":
        return [] if all(1 <= v <= 1024 for v in values) else [_("LoRA ranks must be between 1 and 1024.")]
    rows, classes = dataset.sizes["train"], len(dataset.classes)
    if any(not classes <= v <= rows for v in values):
        return [
            _(
                "Training-set sizes must be between {classes} (one row for each class) and {rows} (every training "
                "row of {dataset}).",
                classes=classes,
                rows=number(rows),
                dataset=dataset.name,
            )
        ]
    return []


def values_from_text(text: str) -> list[float]:
    """Values typed in a box, separated by commas or spaces ('100, 250, 500', '1e-4 5e-4'), in the order given;
    ConfigError in plain words for anything that is not a number, or for an empty box."""

    def value_of(part: str) -> float | None:
        try:
            value = float(part)
        except ValueError:
            return None
        return value if math.isfinite(value) else None

    parts = text.replace(",", " ").replace(";", " ").split()
    bad = [f"'{p}'" for p in parts if value_of(p) is None]
    if not parts:
        raise ConfigError(
            [
                _(
                    "No value was given: give numbers separated by commas, e.g. 100, 250, 500 (no thousands "
                    "separators), or 1e-4, 5e-4 for learning rates."
                )
            ]
        )
    if bad:
        raise ConfigError(
            [
                ngettext(
                    "{values} is not a number: give numbers separated by commas, e.g. 100, 250, 500 (no thousands "
                    "separators), or 1e-4, 5e-4 for learning rates.",
                    "{values} are not numbers: give numbers separated by commas, e.g. 100, 250, 500 (no thousands "
                    "separators), or 1e-4, 5e-4 for learning rates.",
                    len(bad),
                    values=_(", ").join(bad),
                )
            ]
        )
    return [value_of(p) for p in parts]


def create_study(
    session: Session,
    dataset: Dataset,
    model_source: str,
    config: TrainConfig,
    vary: str,
    seeds: int = 3,
    values: list | None = None,
    grids: dict[str, list[float]] | None = None,
    default_rates: dict[str, float | None] | None = None,
    estimates: dict[str, dict] | None = None,
) -> tuple[Study, list[Run]]:
    """Record a study and queue its runs (a learning-rate study queues its final seeds later: `advance`).

    `values` are the sizes or ranks; `grids` each method's learning rates ("lr"); `default_rates` each method's rate
    outside the grid (None: TrainConfig's default), put into its grid if missing; `config` holds what the points share
    (its seed is the first seed). Everything is checked before anything is recorded: a refused study leaves nothing.
    """
    if vary not in found.VARIES:
        raise ConfigError(
            [_("A study varies one of {choices}, not '{vary}'.", choices=", ".join(found.VARIES), vary=vary)]
        )
    if not 1 <= seeds <= MAX_REPEATS:
        raise ConfigError([_("Seeds must be between 1 and {most}.", most=MAX_REPEATS)])
    rates = {m: (default_rates or {}).get(m) or DEFAULT_LEARNING_RATES[m] for m in ("full", "lora")}
    if vary == "lr":
        grid = {
            m: sorted({float(r) for r in (grids or DEFAULT_GRIDS).get(m) or DEFAULT_GRIDS[m]} | {rates[m]})
            for m in rates
        }
        problems = [p for m in grid for p in _check_values("lr", grid[m], dataset)]
    else:
        given = list(values or default_values(vary, dataset.sizes["train"]))
        problems = _check_values(vary, given, dataset)  # before int(): 2.5 is refused, not read as 2
        grid = {"values": sorted({int(v) for v in given})}
    plan = _plan(vary, config, grid, rates, seeds)
    problems += problems_of([c for __, c, __ in plan]) if plan else []
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))
    study = Study(
        vary=vary,
        dataset_id=dataset.id,
        dataset_name=dataset.name,
        model_source=models.absolute_source(model_source),
        config=config.to_dict(),
        grid={**grid, **({"default": rates} if vary == "lr" else {})},
        seeds=seeds,
        first_seed=config.seed,
    )
    session.add(study)
    session.flush()
    runs = [
        _queue(session, study, dataset, run_config, role, pair, (estimates or {}).get(run_config.method))
        for role, run_config, pair in plan
    ]
    return study, runs


def _plan(vary: str, config: TrainConfig, grid: dict, rates: dict, seeds: int) -> list[tuple[str, TrainConfig, str]]:
    """(role, config, pair key) of each run to queue now, in the order the worker should take them."""

    def with_(method: str, **values) -> TrainConfig:
        return TrainConfig.from_dict({**config.to_dict(), "method": method, **values})

    first = config.seed
    if vary == "lr":
        plan = [("default", with_(m, learning_rate=rates[m]), "default") for m in ("full", "lora")]
        others = {m: [r for r in grid[m] if r != rates[m]] for m in ("full", "lora")}
        for k in range(max(map(len, others.values()))):  # the two methods' rates in turn, low to high
            plan += [
                ("grid", with_(m, learning_rate=others[m][k]), "") for m in ("full", "lora") if k < len(others[m])
            ]
        return plan
    plan = []
    for seed in range(first, first + seeds):
        if vary == "train_size":
            for n in grid["values"]:
                plan += [
                    ("point", with_(m, seed=seed, train_rows=n, learning_rate=rates[m]), f"n{n}-s{seed}")
                    for m in ("full", "lora")
                ]
        else:
            plan.append(("point", with_("full", seed=seed, learning_rate=rates["full"]), f"s{seed}"))
            plan += [
                ("point", with_("lora", seed=seed, lora_r=r, learning_rate=rates["lora"]), f"s{seed}")
                for r in grid["values"]
            ]
    if vary == "train_size":  # the smallest sets first, every seed: a first look at the curve comes soonest
        plan.sort(key=lambda p: p[1].train_rows)
    return plan


def _queue(session: Session, study: Study, dataset: Dataset, config: TrainConfig, role: str, pair: str, estimate):
    run = create_run(
        session, dataset, study.model_source, config, f"study{study.id}-{pair}" if pair else None, estimate=estimate
    )
    run.study_id, run.study_role = study.id, role
    session.commit()
    return run


def advance(session: Session, study: Study) -> list[Run]:
    """Queue what a learning-rate study needs next: for each method whose rates have all ended, its best rate on the
    dev set on the fresh seeds, unless they are queued already. Returns the runs it queued (none for other studies).
    Safe to call at any time, from any process, from several at once: it only adds what is missing."""
    if study.vary != "lr":
        return []
    runs = found.study_runs(session, study.id)
    best = found.best_rates(study, found.points(session, study, runs))
    dataset = session.get(Dataset, study.dataset_id) if study.dataset_id else None
    queued = []
    for method, chosen in best.items():
        # Two processes may advance one study at once (two workers, a worker and `study`): each method's finals are
        # looked for and queued under the study's lock (its row on PostgreSQL; a writing session's on SQLite), its
        # runs read again there, so whoever comes second finds them queued. Each queued run commits, which lets go.
        session.execute(select(Study.id).where(Study.id == study.id).with_for_update())
        runs = found.study_runs(session, study.id)
        finals = [
            r
            for r in runs
            if r.study_role == "final" and r.method == method and r.config.get("learning_rate") == chosen["value"]
        ]
        if finals or dataset is None:
            continue
        tried = next(
            r
            for r in runs
            if r.method == method and r.study_role in found.TRIED and r.config.get("learning_rate") == chosen["value"]
        )
        for seed in range(study.first_seed + 1, study.first_seed + 1 + study.seeds):
            config = TrainConfig.from_dict({**tried.config, "seed": seed})
            queued.append(_queue(session, study, dataset, config, "final", f"final-s{seed}", tried.estimate))
        log.info(
            "study %s: %s's best rate on dev is %g; queued %d fresh seeds",
            study.id,
            method,
            chosen["value"],
            study.seeds,
        )
    return queued


def advance_all(settings: Settings) -> dict[int, int]:
    """`advance` every learning-rate study whose rates have all ended (it adds only what is missing). Returns study
    id -> runs queued, for those it queued runs in. The worker calls it when it starts (a study whose last rate ended
    while no worker ran); then each run of a study advances its study as it ends (core.jobs.worker.supervise)."""
    queued = {}
    with session_factory(settings.db_url)() as s:
        for study in s.scalars(select(Study).where(Study.vary == "lr")):
            roles = s.execute(select(Run.study_role, Run.status).where(Run.study_id == study.id)).all()
            waiting = any(
                role in found.TRIED and status in (RunStatus.QUEUED.value, RunStatus.RUNNING.value)
                for role, status in roles
            )
            if not waiting and (added := advance(s, study)):
                queued[study.id] = len(added)
    return queued


def add_rate(session: Session, study: Study, method: str, rate: float) -> Run:
    """Try one more rate in a learning-rate study (the next one beyond the edge of a method's grid): a rate like the
    others, on the first seed; once it has ended, `advance` trains the method's best rate on the fresh seeds if the
    choice has changed."""
    if study.vary != "lr":
        raise ConfigError([_("Only a learning-rate study tries more rates.")])
    problems = _check_values("lr", [rate], None)
    if problems:
        raise ConfigError(problems)
    tried = next(r for r in found.study_runs(session, study.id) if r.method == method and r.study_role == "default")
    dataset = session.get(Dataset, study.dataset_id) if study.dataset_id else None
    if dataset is None:
        raise ConfigError(
            [_("Study {study}'s dataset was deleted: launch a new study on another dataset.", study=study.id)]
        )
    study.grid = {**study.grid, method: sorted({*study.grid[method], float(rate)})}
    config = TrainConfig.from_dict({**tried.config, "learning_rate": float(rate)})
    return _queue(session, study, dataset, config, "grid", "", tried.estimate)


def study_seconds(vary: str, seeds: int, grid: dict, per_method: dict[str, dict], train_rows: int) -> dict:
    """A study's time, its runs one after another, from each method's run estimate (core.jobs.estimate: total_seconds,
    claim to result; train_seconds, training alone): {"runs", "most", "likely"}. For a learning-rate study "most" has
    no rate stopped early and "likely" half of the prunable ones stopped at the pruner's rung; a size's run trains
    for its share of the rows (its fixed costs stay)."""
    from core.training.pruning import PRUNE_AT  # here: the pruner imports transformers

    total = {m: e["total_seconds"] for m, e in per_method.items()}
    train = {m: e["train_seconds"] for m, e in per_method.items()}
    if vary == "lr":
        most = sum(total[m] * (len(grid[m]) + seeds) for m in total)
        saved = sum(0.5 * (1 - PRUNE_AT) * train[m] * (len(grid[m]) - 1) for m in train)
        return {"runs": found.planned_runs(vary, seeds, grid), "most": most, "likely": most - saved}
    if vary == "train_size":
        most = seeds * sum(total[m] - train[m] * (1 - n / train_rows) for m in total for n in grid["values"])
    else:
        most = seeds * (total["full"] + len(grid["values"]) * total["lora"])
    return {"runs": found.planned_runs(vary, seeds, grid), "most": most, "likely": most}
