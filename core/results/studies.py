"""Studies as the dashboard and the command line read them: each point's scores, each method's best learning rate
(chosen on the dev set), the verdicts, and the study in a sentence. Creating and advancing a study is
core/jobs/studies.py's; the verdicts are comparisons.compare_summary's, on the pairs comparisons.completed_pairs finds.

A run's dev score is the dev accuracy of the weights it kept (the evaluation with the lowest dev loss, as the run keeps
them): what the model it saved scores on the dev set.
"""

from __future__ import annotations

import statistics
from collections import Counter
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import words
from core.i18n import N_, _, ngettext
from core.results.comparisons import NotComparable, compare_summary, completed_pairs
from core.store.db import Metric, Run, RunStatus, Study
from core.words import percent

if TYPE_CHECKING:
    import pandas as pd

VARIES = ("lr", "train_size", "lora_rank")
VARY_NAMES = {"lr": N_("learning rate"), "train_size": N_("training rows"), "lora_rank": N_("LoRA rank")}
METHODS = {"full": N_("full fine-tuning"), "lora": "LoRA"}  # a method inside a sentence; LoRA stays LoRA
METHODS_FIRST = {"full": N_("Full fine-tuning"), "lora": "LoRA"}  # ... starting one
# The point roles of a learning-rate study's runs: the rates tried (the default rate among them, never stopped early)
TRIED = ("default", "grid")
INTERRUPTED = (RunStatus.CANCELLED.value, RunStatus.CRASHED.value)


def study_runs(session: Session, study_id: int) -> list[Run]:
    return list(session.scalars(select(Run).where(Run.study_id == study_id).order_by(Run.id)))


def studies(session: Session) -> list[Study]:
    """Studies that have at least one run, newest first."""
    return list(session.scalars(select(Study).where(Study.runs.any()).order_by(Study.id.desc())))


def value_of(study: Study, run: Run) -> float | int | None:
    """The run's point: its learning rate, training rows or LoRA rank (None: a rank study's full fine-tuning)."""
    if study.vary == "lr":
        return run.config.get("learning_rate")
    if study.vary == "train_size":
        return run.config.get("train_rows")
    return run.config.get("lora_r") if run.method == "lora" else None


def value_text(vary: str, value) -> str:
    if value is None:
        return "—"
    if vary == "lr":
        return f"{value:g}"
    return f"{int(value):,}" if vary == "train_size" else f"r = {int(value)}"


def study_label(study: Study) -> str:
    """E.g. 'Study #2 · learning rate · BBC News titles (demo) · 2 epochs'."""
    epochs = study.config.get("epochs")
    parts = [
        _("Study #{study}", study=study.id),
        _(VARY_NAMES[study.vary]),
        study.dataset_name,
        _("{epochs} epochs", epochs=f"{epochs:g}") if epochs else "",
    ]
    return " · ".join(p for p in parts if p)


def dev_scores(session: Session, run_ids: list[int]) -> dict[int, dict[str, float]]:
    """Run id -> {"accuracy", "f1_macro"} on the dev set, of the weights each run kept (lowest dev loss)."""
    rows = session.execute(
        select(Metric.run_id, Metric.step, Metric.name, Metric.value).where(
            Metric.run_id.in_(run_ids), Metric.name.in_(("eval_loss", "eval_accuracy", "eval_f1_macro"))
        )
    ).all()
    by_run: dict[int, dict[int, dict[str, float]]] = {}
    for run_id, step, name, value in rows:
        by_run.setdefault(run_id, {}).setdefault(step, {})[name] = value
    out = {}
    for run_id, steps in by_run.items():
        evaluated = [(m["eval_loss"], step, m) for step, m in steps.items() if "eval_loss" in m]
        if evaluated:
            *__, kept = min(evaluated, key=lambda e: (e[0], e[1]))  # the first lowest, as the run keeps it
            out[run_id] = {"accuracy": kept.get("eval_accuracy"), "f1_macro": kept.get("eval_f1_macro")}
    return out


def _mean(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def _scored(members: list[Run], dev: dict[int, dict[str, float]]) -> dict:
    """The runs of one point: how many completed, their mean dev and test scores, and the lowest and highest dev and
    test accuracy over seeds (the band)."""
    done = [r for r in members if r.status == RunStatus.COMPLETED.value]
    devs = [dev.get(r.id, {}) for r in done]
    tests = [r.test_metrics or {} for r in done]
    dev_acc = [d.get("accuracy") for d in devs if d.get("accuracy") is not None]
    test_acc = [t.get("accuracy") for t in tests if t.get("accuracy") is not None]
    return {
        "runs": [r.id for r in members],
        "completed": len(done),
        "dev": {"accuracy": _mean(dev_acc), "f1_macro": _mean([d.get("f1_macro") for d in devs])},
        "test": {"accuracy": _mean(test_acc), "f1_macro": _mean([t.get("f1_macro") for t in tests])},
        "dev_band": [min(dev_acc), max(dev_acc)] if dev_acc else None,
        "test_band": [min(test_acc), max(test_acc)] if test_acc else None,
        "trainable_params": _mean([r.trainable_params for r in done]),
        "finished": all(r.run_status.finished for r in members),
        # cancelled or crashed: the choice waits until it is resumed (a study Ctrl+C stopped goes no further)
        "interrupted": any(r.status in INTERRUPTED for r in members),
    }


def points(session: Session, study: Study, runs: list[Run]) -> list[dict]:
    """One entry per (value, method), in the order of the values: the runs (learning rate: the rates tried, not the
    final seeds), the mean dev and test scores of those that completed, the lowest and highest dev and test accuracy
    over seeds (the band), and whether the pruner stopped it."""
    tried = [r for r in runs if study.vary != "lr" or r.study_role in TRIED]
    dev = dev_scores(session, [r.id for r in tried])
    grouped: dict[tuple, list[Run]] = {}
    for run in tried:
        grouped.setdefault((value_of(study, run), run.method), []).append(run)
    out = []
    for (value, method), members in sorted(grouped.items(), key=lambda kv: (kv[0][0] is not None, kv[0][0] or 0)):
        out.append(
            {
                "value": value,
                "method": method,
                **_scored(members, dev),
                "stopped_early": any(r.stopped_early for r in members),
                "default": any(r.study_role == "default" for r in members),
            }
        )
    return out


def chosen_points(session: Session, study: Study, runs: list[Run], best: dict) -> dict[str, dict]:
    """For a learning-rate study: per method with a chosen rate, that rate's runs on the fresh seeds, scored as a
    point is ({"value", "runs", "completed", "dev", "test", "dev_band", "test_band", ...}); none while not queued."""
    finals = verdict_runs(study, runs, best)["tuned"]
    dev = dev_scores(session, [r.id for r in finals])
    out = {}
    for method, chosen in best.items():
        mine = [r for r in finals if r.method == method]
        if mine:
            out[method] = {"value": chosen["value"], **_scored(mine, dev)}
    return out


def best_rates(study: Study, pts: list[dict]) -> dict[str, dict]:
    """For a learning-rate study: per method whose rates have all ended (none cancelled or crashed: the choice
    waits for them to be resumed), the rate with the best dev accuracy among those trained to the end, {"value", "dev",
    "edge", "next"}: `edge` is "lowest" or "highest" when the best is at that end of the method's grid (the best may
    lie beyond), and `next` the rate one grid step beyond it (None past 1)."""
    out = {}
    for method in ("full", "lora"):
        mine = [p for p in pts if p["method"] == method]
        if not mine or not all(p["finished"] for p in mine) or any(p["interrupted"] for p in mine):
            continue
        candidates = [p for p in mine if p["dev"]["accuracy"] is not None and not p["stopped_early"]]
        if not candidates:
            continue
        best = max(candidates, key=lambda p: (p["dev"]["accuracy"], p["default"]))  # a tie: the default rate
        grid = sorted(p["value"] for p in mine)
        edge = next_rate = None
        if len(grid) > 1 and best["value"] in (grid[0], grid[-1]):
            low = best["value"] == grid[0]
            edge = "lowest" if low else "highest"
            step = grid[1] / grid[0] if low else grid[-1] / grid[-2]
            beyond = float(f"{best['value'] / step if low else best['value'] * step:.2g}")
            next_rate = beyond if 0 < beyond < 1 else None  # a rate of 1 or more is no rate
        out[method] = {"value": best["value"], "dev": best["dev"]["accuracy"], "edge": edge, "next": next_rate}
    return out


def verdict_of(session: Session, runs: list[Run]) -> dict | None:
    """compare --json's object for the completed pairs among the runs; None while there is none."""
    pairs = completed_pairs(runs)
    if not pairs:
        return None
    try:
        return compare_summary(session, [r for pair in pairs for r in pair])
    except NotComparable:
        return None


def verdict_runs(study: Study, runs: list[Run], best: dict) -> dict[str, list[Run]]:
    """For a learning-rate study, the runs each verdict compares: "tuned", each method's chosen rate on the fresh
    seeds alone; "default", the default rates on the study's first seed."""
    chosen = {m: b["value"] for m, b in best.items()}
    return {
        "tuned": [
            r for r in runs if r.study_role == "final" and r.config.get("learning_rate") == chosen.get(r.method)
        ],
        "default": [r for r in runs if r.study_role == "default"],
    }


def verdicts(session: Session, study: Study, runs: list[Run], best: dict | None = None) -> dict:
    """The study's verdicts. Learning rate: "tuned" (each method's chosen rate, on the fresh seeds alone) and
    "default" (the default rates, on the study's first seed); otherwise one per point, keyed by its value."""
    if study.vary == "lr":
        best = best if best is not None else best_rates(study, points(session, study, runs))
        compared = verdict_runs(study, runs, best)
        return {
            "tuned": verdict_of(session, compared["tuned"]) if len(best) == 2 else None,
            "default": verdict_of(session, compared["default"]),
        }
    full = [r for r in runs if r.method == "full"]
    out = {}
    for value in sorted({value_of(study, r) for r in runs} - {None}):
        at = [r for r in runs if value_of(study, r) == value]
        out[value] = verdict_of(session, at if study.vary == "train_size" else full + at)
    return out


def _said(verdict: dict) -> str:
    """'full fine-tuning wins by 9.0 points', 'LoRA wins by 1.2 points', 'no difference', 'too close to call'."""
    points_ = f"{abs(verdict['difference_points']):.1f}"
    if verdict["verdict"] == "full_better":
        return _("full fine-tuning wins by {points} points", points=points_)
    if verdict["verdict"] == "lora_better":
        return _("LoRA wins by {points} points", points=points_)
    if verdict["verdict"] == "no_difference":
        return _("no difference")
    return _("the test set is too small to tell ({points} points)", points=f"{verdict['difference_points']:+.1f}")


def lr_sentence(best: dict, tuned: dict | None, default: dict | None) -> str | None:
    """The learning-rate study in words: both verdicts, and plainly when they disagree."""
    if tuned is None or default is None:
        return None
    rates = _(", ").join(_("{method} {rate}", method=_(METHODS[m]), rate=f"{best[m]['value']:g}") for m in best)
    said = {"default": _said(default), "rates": rates, "tuned": _said(tuned)}
    if tuned["verdict"] != default["verdict"]:
        return _(
            "The two verdicts disagree: at the default rates {default}; each at its best rate on the dev set "
            "({rates}), {tuned}.",
            **said,
        )
    return _(
        "The two verdicts agree: at the default rates {default}; each at its best rate on the dev set ({rates}), "
        "{tuned}.",
        **said,
    )


def edge_notes(best: dict) -> list[str]:
    """'Full fine-tuning's best rate, 0.0005, is the highest it tried: the best may lie beyond (next: 0.0013).'"""
    notes = []
    for m, b in best.items():
        if not b["edge"]:
            continue
        said = {"method": _(METHODS_FIRST[m]), "rate": f"{b['value']:g}"}
        if b["edge"] == "lowest":
            note = _(
                "{method}'s best learning rate, {rate}, is the lowest it tried: the best may lie beyond it.", **said
            )
        else:
            note = _(
                "{method}'s best learning rate, {rate}, is the highest it tried: the best may lie beyond it.", **said
            )
        if b["next"]:
            note = _("{note} Next rate to try: {rate}.", note=note, rate=f"{b['next']:g}")
        notes.append(note)
    return notes


AHEAD = {"full_better": N_("full fine-tuning ahead"), "lora_better": N_("LoRA ahead")}  # else: no clear winner
NO_WINNER = N_("no clear winner")


def ahead_text(outcome: str) -> str:
    return _(AHEAD.get(outcome, NO_WINNER))


def stretches(per_value: dict) -> list[list]:
    """The values in order, grouped where the verdict stays the same: [first value, last value, outcome] each (values
    without a verdict yet left out)."""
    out: list[list] = []
    for value, verdict in sorted(per_value.items()):
        if verdict is None:
            continue
        if out and out[-1][2] == verdict["verdict"]:
            out[-1][1] = value
        else:
            out.append([value, value, verdict["verdict"]])
    return out


def verdict_changes(per_value: dict) -> list[tuple]:
    """Where the verdict changes: (the first value of the new verdict, 'LoRA ahead' / 'full fine-tuning ahead' / 'no
    clear winner') for each change, in order of the values."""
    return [(first, ahead_text(outcome)) for first, __, outcome in stretches(per_value)[1:]]


def size_sentence(per_value: dict) -> str | None:
    """Where each method wins by training rows: 'LoRA ahead below 500 rows, full fine-tuning from 500 rows.'"""
    runs_of = stretches(per_value)  # (first value, last value, outcome) of each stretch of one outcome
    if not runs_of:
        return None
    parts = [
        _("{ahead} at {rows} rows", ahead=ahead_text(outcome), rows=f"{first:,}")
        if first == last
        else _("{ahead} from {first} to {last} rows", ahead=ahead_text(outcome), first=f"{first:,}", last=f"{last:,}")
        for first, last, outcome in runs_of
    ]
    changes = [f"{stretch[0]:,}" for stretch in runs_of[1:]]
    tail = (
        _("The verdict changes at {rows} rows.", rows=_(", ").join(changes))
        if changes
        else _("The verdict is the same at every size.")
    )
    said_all = _("; ").join(parts)
    return _("{stretches}. {changes}", stretches=said_all[0].upper() + said_all[1:], changes=tail)


def verdicts_frame(vary: str, per_value: dict) -> pd.DataFrame:
    """The verdict at each size or rank, one row each: the value, who wins by how much, the 95 % interval of the
    difference (LoRA minus full fine-tuning, in points) and the seeds; a value still training says so."""
    import pandas as pd

    columns = [_(VARY_NAMES[vary]), _("verdict"), _("LoRA minus full (points)"), _("95 % interval"), _("seeds")]
    rows = []
    for value, verdict in sorted(per_value.items()):
        done = verdict is not None
        low, high = verdict["ci95_points"] if done else (None, None)
        rows.append(
            [
                value_text(vary, value),
                _said(verdict) if done else _("still training"),
                f"{verdict['difference_points']:+.1f}" if done else "",
                _("{low} to {high}", low=f"{low:+.1f}", high=f"{high:+.1f}") if done else "",
                verdict["seeds"] if done else None,
            ]
        )
    return pd.DataFrame(rows, columns=columns)


def rank_sentence(pts: list[dict]) -> str | None:
    """What the adapters' size buys: LoRA's best rank against full fine-tuning, with its share of the weights."""
    full = next((p for p in pts if p["method"] == "full" and p["test"]["accuracy"] is not None), None)
    lora = [p for p in pts if p["method"] == "lora" and p["test"]["accuracy"] is not None]
    if full is None or not lora:
        return None
    best = max(lora, key=lambda p: p["test"]["accuracy"])
    gap = 100 * (best["test"]["accuracy"] - full["test"]["accuracy"])
    said = {"rank": int(best["value"]), "points": f"{abs(gap):.1f}"}
    if not (best["trainable_params"] and full["trainable_params"]):
        if round(gap, 1) == 0:
            return _("LoRA's best rank, r = {rank}, is level with full fine-tuning on the test set.", **said)
        if gap > 0:
            return _(
                "LoRA's best rank, r = {rank}, is {points} points ahead of full fine-tuning on the test set.", **said
            )
        return _("LoRA's best rank, r = {rank}, is {points} points behind full fine-tuning on the test set.", **said)
    said["share"] = percent(best["trainable_params"] / full["trainable_params"])
    if round(gap, 1) == 0:
        return _(
            "LoRA's best rank, r = {rank}, is level with full fine-tuning on the test set, with {share} of its "
            "trainable weights.",
            **said,
        )
    if gap > 0:
        return _(
            "LoRA's best rank, r = {rank}, is {points} points ahead of full fine-tuning on the test set, with {share} "
            "of its trainable weights.",
            **said,
        )
    return _(
        "LoRA's best rank, r = {rank}, is {points} points behind full fine-tuning on the test set, with {share} of "
        "its trainable weights.",
        **said,
    )


def view(session: Session, study: Study) -> dict:
    """Everything the study's page and `core study --json` read, computed once: "runs", "points", "verdicts",
    "sentence", "notes"; for a learning-rate study also "best" (best_rates), "chosen" (chosen_points), "pairs" (the
    run ids each verdict pairs) and "disagree" (whether the two verdicts differ); for a size study "changes"
    (verdict_changes)."""
    runs = study_runs(session, study.id)
    pts = points(session, study, runs)
    out = {"runs": runs, "points": pts, "notes": []}
    if study.vary == "lr":
        best = out["best"] = best_rates(study, pts)
        found = out["verdicts"] = verdicts(session, study, runs, best)
        out["chosen"] = chosen_points(session, study, runs, best)
        out["pairs"] = {
            name: [(a.id, b.id) for a, b in completed_pairs(members)]
            for name, members in verdict_runs(study, runs, best).items()
        }
        out["sentence"] = lr_sentence(best, found["tuned"], found["default"])
        out["disagree"] = bool(out["sentence"]) and found["tuned"]["verdict"] != found["default"]["verdict"]
        out["notes"] = edge_notes(best)
    elif study.vary == "train_size":
        found = out["verdicts"] = verdicts(session, study, runs)
        out["changes"] = verdict_changes(found)
        out["sentence"] = size_sentence(found)
    else:
        out["verdicts"] = verdicts(session, study, runs)
        out["sentence"] = rank_sentence(pts)
    return out


def summary(session: Session, study: Study) -> dict:
    """What `python -m core study --json` prints (keys fixed; see docs/command-line.md): `view` as plain data."""
    seen = view(session, study)
    out = {
        "study": study.id,
        "vary": study.vary,
        "points": [
            {k: p[k] for k in ("value", "method", "runs", "dev", "test", "stopped_early")} for p in seen["points"]
        ],
        "status": status_counts(seen["runs"]),
    }
    found = seen["verdicts"]
    if study.vary == "lr":
        out["best"] = {m: {"value": b["value"], "dev": b["dev"]} for m, b in seen["best"].items()}
        out["verdict"], out["default_verdict"] = found["tuned"], found["default"]
    else:
        out["verdict"] = [{"value": v, **({"verdict": None} if d is None else d)} for v, d in found.items()]
    out["sentence"], out["notes"] = seen["sentence"], seen["notes"]
    return out


def status_counts(runs: list[Run]) -> dict[str, int]:
    return dict(Counter(run.status for run in runs))


def point_text(vary: str, run: Run) -> str:
    """A study's run by its point, for the run list: 'rate 0.001', 'rate 0.01 · stopped early', 'rate 0.001 · fresh
    seed' (a chosen rate), '250 rows', 'r = 4', or 'full fine-tuning, against every rank'."""
    config = run.config or {}
    if vary == "lr":
        role = {"final": N_("fresh seed"), "default": N_("default")}.get(run.study_role)
        parts = [_("rate {rate}", rate=f"{config.get('learning_rate', 0):g}"), _(role) if role else ""]
        return " · ".join(p for p in [*parts, _("stopped early") if run.stopped_early else ""] if p)
    if vary == "train_size":
        return _("{rows} rows", rows=f"{config.get('train_rows') or 0:,}")
    return f"r = {config.get('lora_r')}" if run.method == "lora" else _("full fine-tuning, against every rank")


def with_studies(session: Session, table: pd.DataFrame) -> pd.DataFrame:
    """The Runs history table (core.results.tables.history_frame) with each run's study and its point in it, after
    the pair it was trained with ('' for a run outside a study)."""
    varies = dict(session.execute(select(Study.id, Study.vary)).all())
    studied = {r.id: r for r in session.scalars(select(Run).where(Run.study_id.is_not(None)))}
    table = table.copy()
    at = table.columns.get_loc("pair") + 1 if "pair" in table.columns else len(table.columns)
    table.insert(
        at,
        "study",
        [
            f"#{studied[i].study_id} · {point_text(varies[studied[i].study_id], studied[i])}" if i in studied else ""
            for i in table["run"].tolist()
        ],
    )
    return table


def planned_runs(vary: str, seeds: int, grid: dict) -> int:
    """How many runs a study trains: for a learning-rate study, every rate tried and each method's chosen rate on the
    fresh seeds; otherwise both methods at each point on every seed (a rank study's full fine-tuning once a seed)."""
    if vary == "lr":
        return len(grid["full"]) + len(grid["lora"]) + 2 * seeds
    if vary == "train_size":
        return 2 * len(grid["values"]) * seeds
    return (1 + len(grid["values"])) * seeds


def study_progress(study: Study, runs: list[Run]) -> dict:
    """{"completed", "ended" (completed, failed, cancelled or crashed), "planned", "active"}: a learning-rate study
    may queue more than it planned (a rate added, a choice changed), so "planned" is never below the runs it has; it is
    "active" while a run is to end, or planned runs can still come (its fresh seeds, once its rates have ended)."""
    planned = max(planned_runs(study.vary, study.seeds, study.grid), len(runs))
    ended = sum(r.run_status.finished for r in runs)
    # Fresh seeds still to come: not for a study whose dataset is gone, nor while a rate waits to be resumed
    to_queue = ended < planned and study.dataset_id is not None and not any(r.status in INTERRUPTED for r in runs)
    return {
        "completed": sum(r.status == RunStatus.COMPLETED.value for r in runs),
        "ended": ended,
        "planned": planned,
        "active": ended < len(runs) or to_queue,
    }


def studies_frame(session: Session) -> pd.DataFrame:
    """One row per study, newest first: what it varies, how far it is, and a link to it on Compare."""
    import pandas as pd

    rows = []
    for study in studies(session):
        progress = study_progress(study, study_runs(session, study.id))
        rows.append(
            {
                "study": study_label(study),
                "varies": _(VARY_NAMES[study.vary]),
                "runs completed": _("{done} of {total}", done=progress["completed"], total=progress["planned"]),
                "open": f"/compare?study={study.id}",
            }
        )
    return pd.DataFrame(rows, columns=["study", "varies", "runs completed", "open"])


def delete_choices(session: Session, run_bytes: dict[int, int]) -> dict[str, tuple[str, list[int]]]:
    """Every study whole, newest first, for the Runs page's delete box (beside comparisons.delete_choices), with the
    disk it takes (run_bytes: core.store.storage.DiskUse.runs). Key -> (label, run ids)."""
    out = {}
    for study in studies(session):
        runs = study_runs(session, study.id)
        size = words.size_text(sum(run_bytes.get(r.id, 0) for r in runs))
        out[f"study-{study.id}"] = (
            " · ".join((study_label(study), ngettext("{n} run", "{n} runs", len(runs)), size)),
            [r.id for r in runs],
        )
    return out
