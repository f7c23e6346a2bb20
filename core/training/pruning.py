"""Stopping a learning-rate study's hopeless rates early: successive halving, by Optuna's pruner.

Each rate a study tries (a run of role "grid") reports its dev loss at every evaluation, as every run does (the
metrics table). At each evaluation the run asks whether it is clearly behind the study's other rates of its method at
the same point: the reports of those runs, in the order the database received them, are replayed through Optuna's
`SuccessiveHalvingPruner` (asynchronous successive halving: a rate goes on past a rung if it is in the best
1 / REDUCTION of the rates that reached that rung so far, the best one while fewer than REDUCTION have). The database
stays the one record; Optuna decides. The default rates (role "default") report too but are never stopped: the verdict
at the defaults needs them trained to the end.

Judged on dev loss, not accuracy: early in training most rates sit at the majority class's accuracy (every rate of
LoRA on a 10-class Chinese set, at a quarter and at half of 2 epochs), where accuracy cannot tell them apart and a
rate that ends best can be behind; the loss already orders them as they end. It is also what a run keeps its
weights by. The chosen rate is still the one with the best dev accuracy at the end (core.results.studies).
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from transformers import TrainerCallback

from core.i18n import _
from core.store.db import Metric, Run, interrupts_deferred

# The first rung: the evaluation nearest a quarter of the training (the first one at the least); successive halving
# judges again at REDUCTION times that step, where the training still goes on. On the grids of
# bench/study_bench.py trained to the end, dev loss there ranked the rates as they ended (docs/benchmarks.md).
PRUNE_AT = 0.25
JUDGED = "eval_loss"  # lower is better
REDUCTION = 3  # successive halving's eta: the best third go on (the best one while fewer than 3 reached the rung)


def rung_step(max_steps: int, eval_steps: int) -> int:
    """The step of the evaluation nearest PRUNE_AT of the training (the first one at the least)."""
    return max(eval_steps, round(PRUNE_AT * max_steps / eval_steps) * eval_steps)


def stopped_by_pruner(
    reports: list[tuple[int, int, float]], run_id: int, first_rung: int, never_stop: set[int] = frozenset()
) -> bool:
    """Whether `run_id` is stopped at its latest report. `reports` are (run id, step, dev loss) of one method's rates
    in one study, in the order they were made; runs in `never_stop` are judged but go on whatever the answer."""
    import optuna  # here: a run outside a study never needs it

    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=first_rung, reduction_factor=REDUCTION)
    store = logging.getLogger("optuna.storages._in_memory")
    store.addFilter(_no_new_study)  # one study per evaluation: not a log line each
    try:
        study = optuna.create_study(direction="minimize", pruner=pruner)
    finally:
        store.removeFilter(_no_new_study)
    trials, stopped = {}, set()
    for rid, step, value in reports:
        if rid in stopped:
            continue
        trial = trials.get(rid) or trials.setdefault(rid, study.ask())
        trial.report(value, step)
        if trial.should_prune() and rid not in never_stop:
            stopped.add(rid)
    return run_id in stopped


def study_reports(session, run: Run) -> tuple[list[tuple[int, int, float]], set[int]]:
    """The dev losses reported by the rates of the run's method in its study, oldest first, and the runs never
    stopped (the default rates)."""
    rows = session.execute(
        select(Metric.run_id, Metric.step, Metric.value, Run.study_role)
        .join(Run, Run.id == Metric.run_id)
        .where(
            Run.study_id == run.study_id,
            Run.method == run.method,
            Run.study_role.in_(("grid", "default")),
            Metric.name == JUDGED,
        )
        .order_by(Metric.id)
    ).all()
    return [(r, s, v) for r, s, v, _ in rows], {r for r, _, _, role in rows if role == "default"}


class StudyPruner(TrainerCallback):
    """Stops a study's rate (a run of role "grid": the trainer adds it to those alone) at an evaluation where the
    pruner finds it clearly behind, and records that on the run. Runs after RunRecorder, which has written this
    evaluation's dev accuracy by then."""

    def __init__(self, sessions, run_id: int):
        self.sessions, self.run_id = sessions, run_id

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        first_rung = rung_step(state.max_steps, args.eval_steps)
        if state.global_step < first_rung or state.global_step >= state.max_steps:
            return
        with self.sessions() as s:
            reports, never_stop = study_reports(s, s.get(Run, self.run_id))
        if not stopped_by_pruner(reports, self.run_id, first_rung, never_stop):
            return
        control.should_training_stop = True
        note = _(
            "Stopped early at step {step} of {steps}: its dev loss was clearly behind the study's other learning "
            "rates at the same point.",
            step=state.global_step,
            steps=state.max_steps,
        )
        with interrupts_deferred(), self.sessions.begin() as s:
            run = s.get(Run, self.run_id)
            run.stopped_early, run.notes = True, [*(run.notes or []), note]


def _no_new_study(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("A new study created")
