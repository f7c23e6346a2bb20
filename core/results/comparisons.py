"""Comparisons as the dashboard and the command line read them: a group's runs, its pairs, their test predictions
lined up, the verdict and the costs. The statistics themselves are in core/results/verdict.py."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from core import i18n, words
from core.i18n import N_, _, ngettext
from core.results import describe, tables, verdict
from core.store.db import ComparisonGroup, Prediction, Run, RunStatus
from core.words import duration_text

# The columns of the tables below, as code reads them -> their headers on screen and in a download (`shown`)
COLUMNS = {
    "test row": N_("test row"),
    "text": N_("text"),
    "true label": N_("true label"),
    "seed": N_("seed"),
    "runs": N_("runs"),
    "difference": N_("difference"),
    "macro-F1 difference": N_("macro-F1 difference"),
    "run": N_("run"),
    "test accuracy": N_("test accuracy"),
    "macro-F1": N_("macro-F1"),
    "precision (weighted)": N_("precision (weighted)"),
    "recall (weighted)": N_("recall (weighted)"),
    "training time (s)": N_("training time (s)"),
    "texts trained per second": N_("texts trained per second"),
    "trainable weights": N_("trainable weights"),
    "trainable share": N_("trainable share"),
    "peak memory (bytes)": N_("peak memory (bytes)"),
    "model size on disk (bytes)": N_("model size on disk (bytes)"),
    "training time": N_("training time"),
    "peak memory": N_("peak memory"),
    "model size on disk": N_("model size on disk"),
}


def header(name: str) -> str:
    """A column's header in the reader's language: COLUMNS', a side's name (verdict.name_text), else as it is."""
    return _(COLUMNS[name]) if name in COLUMNS else verdict.name_text(name)


def shown(frame: pd.DataFrame) -> pd.DataFrame:
    """A table of this module with its headers in the reader's language, for the screen or a download; code keeps
    reading the frame itself by its English column names."""
    return frame.rename(columns=lambda c: header(c) if isinstance(c, str) else c)


@dataclass
class Lined:
    """Test predictions of several runs on one test set, row for row."""

    y_true: np.ndarray  # (n,) class ids
    preds: dict[int, np.ndarray]  # run id -> (n,) predicted class ids
    texts: list[str]
    classes: list[str]


def group_runs(session: Session, group_id: int) -> list[Run]:
    return list(session.scalars(select(Run).where(Run.group_id == group_id).order_by(Run.id)))


def groups(session: Session) -> list[ComparisonGroup]:
    """Comparisons that have at least one run, newest first."""
    query = select(ComparisonGroup).where(ComparisonGroup.runs.any()).order_by(ComparisonGroup.id.desc())
    return list(session.scalars(query))


def group_label(group: ComparisonGroup, runs: list[Run]) -> str:
    """E.g. 'Comparison #3 · BBC News titles (demo) · 3 epochs · seeds 42-44'."""
    config = runs[0].config if runs else {}
    seeds = (
        _("seed {seed}", seed=group.first_seed)
        if group.repeats == 1
        else _("seeds {first}-{last}", first=group.first_seed, last=group.first_seed + group.repeats - 1)
    )
    epochs = config.get("epochs")
    parts = [
        _("Comparison #{group}", group=group.id),
        runs[0].dataset_name if runs else "",
        _("{epochs} epochs", epochs=f"{epochs:g}") if epochs else "",
    ]
    return " · ".join(p for p in [*parts, seeds] if p)


def group_progress(session: Session) -> dict[int, tuple[int, int]]:
    """group id -> (completed runs, runs)."""
    rows = session.execute(
        select(Run.group_id, func.count(), func.sum(case((Run.status == RunStatus.COMPLETED.value, 1), else_=0)))
        .where(Run.group_id.is_not(None))
        .group_by(Run.group_id)
    ).all()
    return {g: (int(done or 0), int(total)) for g, total, done in rows}


def groups_frame(session: Session) -> pd.DataFrame:
    """One row per comparison, newest first: what it compares, how far it is, and a link to its verdict."""
    progress = group_progress(session)
    rows = []
    for group in groups(session):
        runs = group_runs(session, group.id)
        done, total = progress.get(group.id, (0, 0))
        rows.append(
            {
                "comparison": group_label(group, runs),
                "seeds": group.repeats,
                "runs completed": _("{done} of {total}", done=done, total=total),
                "verdict": f"/compare?group={group.id}" if completed_pairs(runs) else "",  # None reads 'None'
            }
        )
    return pd.DataFrame(rows, columns=["comparison", "seeds", "runs completed", "verdict"])


def group_of(session: Session, run: Run) -> tuple[int, int, int] | None:
    """(group id, seeds, pairs completed) of a run launched in a comparison of several seeds; else None."""
    if run.group_id is None:
        return None
    group = session.get(ComparisonGroup, run.group_id)
    if group is None or group.repeats < 2:
        return None
    return group.id, group.repeats, len(completed_pairs(group_runs(session, group.id)))


def launched_pairs(runs: list[Run]) -> list[tuple[Run, Run]]:
    """The pairs launched together among the runs (one pair id: full fine-tuning, then LoRA), seed by seed. The one
    place that decides which runs pair; a run outside such a pair is left out."""
    by_pair: dict[str, list[Run]] = {}
    for run in runs:
        if run.pair_id:
            by_pair.setdefault(run.pair_id, []).append(run)
    pairs = [
        tuple(sorted(members, key=lambda r: r.method != "full"))
        for members in by_pair.values()
        if sorted(r.method for r in members) == ["full", "lora"]
    ]
    return sorted(pairs, key=lambda p: p[0].config.get("seed", 0))


def pairs_of(runs: list[Run]) -> list[tuple[Run, Run]]:
    """The runs as (A, B) pairs for a verdict: pairs launched together (full fine-tuning, LoRA), seed by seed, when
    every run is in one; or, for any two runs, the pair of them (A: full fine-tuning if one is, else the older). Empty
    if they do not form pairs."""
    pairs = launched_pairs(runs)
    if pairs and 2 * len(pairs) == len(runs):
        return pairs
    if len(runs) == 2:
        a, b = sorted(runs, key=lambda r: (r.method != "full", r.id))
        return [(a, b)]
    return []


def completed_pairs(runs: list[Run]) -> list[tuple[Run, Run]]:
    """The pairs of a group whose two runs both completed, seed by seed (a group may still be training)."""
    return launched_pairs([r for r in runs if r.status == RunStatus.COMPLETED.value])


def side_names(pairs: list[tuple[Run, Run]]) -> tuple[str, str]:
    a, b = pairs[0]
    if (a.method, b.method) == ("full", "lora"):
        return "full fine-tuning", "LoRA"
    return f"run #{a.id}", f"run #{b.id}"


def line_up(session: Session, runs: list[Run]) -> Lined:
    """The runs' test predictions row for row; NotComparable, in plain words, if they were tested on different
    test sets or have no stored predictions."""
    ids = [r.id for r in runs]
    rows = session.execute(
        select(Prediction.run_id, Prediction.idx, Prediction.text, Prediction.true_label, Prediction.pred_label).where(
            Prediction.run_id.in_(ids)
        )
    ).all()
    df = pd.DataFrame(rows, columns=["run_id", "idx", "text", "true_label", "pred_label"])
    missing = [i for i in ids if i not in set(df["run_id"])]
    if missing:
        raise NotComparable(_("Run {run} has no stored test predictions, so it cannot be compared.", run=missing[0]))
    classes = [tuple((r.test_metrics or {}).get("classes") or ()) for r in runs]
    texts = df.pivot(index="idx", columns="run_id", values="text")
    truth = df.pivot(index="idx", columns="run_id", values="true_label")
    if (
        len(set(classes)) > 1
        or texts.isna().any().any()
        or (texts.nunique(axis=1) > 1).any()
        or (truth.nunique(axis=1) > 1).any()
    ):
        raise NotComparable(
            _(
                "These runs were tested on different test sets, so their predictions cannot be lined up. "
                "Pick runs trained on the same dataset."
            )
        )
    preds = df.pivot(index="idx", columns="run_id", values="pred_label")
    return Lined(
        y_true=truth[ids[0]].to_numpy(dtype=int),
        preds={i: preds[i].to_numpy(dtype=int) for i in ids},
        texts=texts[ids[0]].tolist(),
        classes=list(classes[0]),
    )


def disagreements(session: Session, runs: list[Run]) -> pd.DataFrame:
    """Test texts on which the runs disagree: CSV row, text, true label, each run's prediction (✓ right), under
    a short header (describe.column_label)."""
    lined = line_up(session, runs)
    preds = np.stack([lined.preds[r.id] for r in runs])
    differ = np.flatnonzero((preds != preds[0]).any(axis=0))
    names = lined.classes
    out = pd.DataFrame(
        {
            "test row": differ + 2,  # as a spreadsheet numbers the test split's rows: a header, then row 0
            "text": [lined.texts[i] for i in differ],
            "true label": [names[lined.y_true[i]] for i in differ],
        }
    )
    for run, row in zip(runs, preds):
        out[describe.column_label(run, runs)] = [
            f"{names[row[i]]} {'✓' if row[i] == lined.y_true[i] else '✗'}" for i in differ
        ]
    return out


def compute_verdict(session: Session, pairs: list[tuple[Run, Run]], resamples: int = verdict.RESAMPLES):
    """The verdict for these pairs (B minus A), and the lined-up predictions it was computed from."""
    lined = line_up(session, [r for pair in pairs for r in pair])
    preds_a = np.stack([lined.preds[a.id] for a, __ in pairs])
    preds_b = np.stack([lined.preds[b.id] for __, b in pairs])
    result = verdict.compare_predictions(
        lined.y_true, preds_a, preds_b, len(lined.classes), resamples=resamples, names=side_names(pairs)
    )
    return result, lined


def scores(runs: list[Run]) -> pd.DataFrame:
    """Test scores and costs as numbers, one row per run: the figures Compare shows (scores_table writes them as the
    dashboard writes numbers) and what its download holds, so a spreadsheet gets the numbers themselves."""
    rows = []
    for run in runs:
        test = run.test_metrics or {}
        share = run.trainable_params / run.total_params if run.trainable_params and run.total_params else None
        rows.append(
            {
                "run": describe.run_label(run, runs),
                "test accuracy": test.get("accuracy"),
                "macro-F1": test.get("f1_macro"),
                "precision (weighted)": test.get("precision_weighted"),
                "recall (weighted)": test.get("recall_weighted"),
                "training time (s)": run.train_seconds,
                "texts trained per second": run.samples_per_second,
                "trainable weights": run.trainable_params,
                "trainable share": share,
                "peak memory (bytes)": None if run.peak_memory_mb is None else run.peak_memory_mb * 2**20,
                "model size on disk (bytes)": run.artifact_bytes,
            }
        )
    return pd.DataFrame(rows)


def scores_table(runs: list[Run]) -> pd.DataFrame:
    """scores() as the dashboard writes its numbers, one column per run and one row per figure: narrow enough to
    read without scrolling sideways, however many figures there are."""

    def written(row) -> dict[str, str | None]:
        def unless_none(value, text):
            return None if value is None else text(value)

        weights = unless_none(row["trainable weights"], lambda n: f"{int(n):,}")
        if weights is not None and row["trainable share"] is not None:
            weights = _("{weights} ({share})", weights=weights, share=words.percent(row["trainable share"]))
        return {
            "test accuracy": words.percent(row["test accuracy"]),
            "macro-F1": words.percent(row["macro-F1"]),
            "precision (weighted)": words.percent(row["precision (weighted)"]),
            "recall (weighted)": words.percent(row["recall (weighted)"]),
            "training time": unless_none(row["training time (s)"], duration_text),
            "texts trained per second": unless_none(row["texts trained per second"], lambda x: f"{x:,.0f}"),
            "trainable weights": weights,
            "peak memory": unless_none(row["peak memory (bytes)"], words.size_text),
            "model size on disk": unless_none(row["model size on disk (bytes)"], words.size_text),
        }

    figures = scores(runs)
    rows = figures.astype(object).where(figures.notna(), None).to_dict("records")  # a missing figure is None
    table = {row["run"]: written(row) for row in rows}
    return pd.DataFrame(table).fillna("–").rename(index=header).rename_axis("").reset_index()


def costs(run: Run) -> dict:
    return {
        "time": run.train_seconds,
        "samples_per_second": run.samples_per_second,
        "peak_memory": run.peak_memory_mb,
        "trainable_weights": run.trainable_params,
        "disk": run.artifact_bytes,
    }


def cost_ratios(pairs: list[tuple[Run, Run]]) -> dict[str, verdict.CostRatio | None]:
    return verdict.cost_ratios([(costs(a), costs(b)) for a, b in pairs])


def seeds_frame(result: verdict.Verdict, pairs: list[tuple[Run, Run]]) -> pd.DataFrame:
    """Each seed's own result beside the verdict: both methods' test accuracy and the differences, in points. Short
    column names: the table fits a 1024 px screen."""
    a_name, b_name = result.names
    return pd.DataFrame(
        {
            "seed": [a.config.get("seed") for a, __ in pairs],
            "runs": [_("#{a} and #{b}", a=a.id, b=b.id) for a, b in pairs],
            a_name: result.accuracy.a,
            b_name: result.accuracy.b,
            "difference": result.accuracy.per_seed,
            "macro-F1 difference": result.f1_macro.per_seed,
        }
    )


def difference_matrix(lined: Lined, pairs: list[tuple[Run, Run]]) -> np.ndarray:
    """B's confusion matrix minus A's (rows: true class, columns: predicted), in texts, averaged over the seeds."""
    k = len(lined.classes)

    def matrix(run_id: int) -> np.ndarray:
        out = np.zeros((k, k))
        np.add.at(out, (lined.y_true, lined.preds[run_id]), 1)
        return out

    return np.mean([matrix(b.id) - matrix(a.id) for a, b in pairs], axis=0)


REPORT_KEYS = {"accuracy", "macro avg", "weighted avg", "micro avg"}  # scikit-learn's, beside the classes'


def per_class_f1(runs: list[Run]) -> pd.DataFrame:
    """Per-class F1 of each run, one column per run, one row per class."""
    columns = {}
    for run in runs:
        test = run.test_metrics or {}
        classes = test.get("classes") or []
        if "per_class" in test:
            scores = test["per_class"]
        else:  # recorded before "per_class": the report keyed by class name, where a name may be one of its own keys
            report = test.get("report") or {}
            scores = [None if c in REPORT_KEYS else report.get(str(c)) for c in classes]
        columns[run.id] = [s.get("f1-score") if isinstance(s, dict) else None for s in scores]
    classes = (runs[0].test_metrics or {}).get("classes") or []
    return pd.DataFrame(columns, index=[str(c) for c in classes])


def cell_texts(lined: Lined, run_id: int, true: int, pred: int) -> pd.DataFrame:
    """The test texts one run put in one cell of its confusion matrix."""
    where = np.flatnonzero((lined.y_true == true) & (lined.preds[run_id] == pred))
    return pd.DataFrame({"test row": where + 2, "text": [lined.texts[i] for i in where]})


def launched_with(session: Session, run: Run) -> str | None:
    """The verdict of the comparison the run was launched in (its group of seeds, else its pair) in one sentence,
    as a model card states it (in English: model cards travel to the hub); None for a run launched alone or while its
    partners have not all completed."""
    with i18n.speaking(i18n.SOURCE):
        return _launched_with(session, run)


def _launched_with(session: Session, run: Run) -> str | None:
    if run.group_id is not None:
        runs = group_runs(session, run.group_id)
    elif run.pair_id:
        runs = [run, *tables.partners(session, run)]
    else:
        return None
    pairs = completed_pairs(runs)
    if not pairs or len(pairs) * 2 != len(runs):
        return None
    try:
        result, __ = compute_verdict(session, pairs)
    except NotComparable:
        return None
    seeds = f" over {result.seeds} seeds" if result.seeds > 1 else ""
    ids = ", ".join(f"{a.id} and {b.id}" for a, b in pairs)
    return f"{result.sentence()} On {result.test_size} test texts{seeds} (runs {ids})."


def compare_summary(session: Session, runs: list[Run], resamples: int = verdict.RESAMPLES) -> dict:
    """What `python -m core compare --json` prints. NotComparable when the runs give no verdict."""
    unfinished = [r.id for r in runs if r.status != RunStatus.COMPLETED.value]
    if unfinished:
        raise NotComparable(_("Run {run} has not completed, so it has no test results to compare.", run=unfinished[0]))
    pairs = pairs_of(runs)
    if not pairs:
        raise NotComparable(
            _(
                "A verdict needs full fine-tuning and LoRA pairs (a comparison group) or exactly two runs; "
                "these {runs} runs are neither.",
                runs=len(runs),
            )
        )
    result, __ = compute_verdict(session, pairs, resamples)
    named = result.names == ("full fine-tuning", "LoRA")
    outcome = result.outcome
    if not named and outcome in ("lora_better", "full_better"):  # two runs of one method: which of the two
        outcome = "second_better" if outcome == "lora_better" else "first_better"
    ratios = cost_ratios(pairs)
    return {
        "verdict": outcome,
        "metric": "accuracy",
        "difference_points": round(result.accuracy.difference, 4),
        "ci95_points": [round(result.accuracy.low, 4), round(result.accuracy.high, 4)],
        "mcnemar_p": result.mcnemar_p,
        "seeds": result.seeds,
        "test_size": result.test_size,
        "costs": {
            key: (None if ratios[key] is None else round(ratios[key].mean, 6))
            for key in ("time", "peak_memory", "trainable_weights", "disk")
        },
        "sentence": result.sentence(),
        "lines": result.lines(),
        "costs_sentence": verdict.cost_sentence(ratios, result.names),
        "f1_macro": {
            "verdict": result.f1_macro.outcome,
            "difference_points": round(result.f1_macro.difference, 4),
            "ci95_points": [round(result.f1_macro.low, 4), round(result.f1_macro.high, 4)],
        },
        "runs": [[a.id, b.id] for a, b in pairs],
        "compared": list(result.names),
    }


def delete_choices(session: Session, run_bytes: dict[int, int]) -> dict[str, tuple[str, list[int]]]:
    """What the Runs page offers to delete, with the disk each takes (run_bytes: core.store.storage.DiskUse.runs):
    every comparison whole, newest first, then every run. Key -> (label, run ids)."""
    out = {}
    for group in groups(session):
        runs = group_runs(session, group.id)
        size = words.size_text(sum(run_bytes.get(r.id, 0) for r in runs))
        label = " · ".join((group_label(group, runs), ngettext("{n} run", "{n} runs", len(runs)), size))
        out[f"group-{group.id}"] = (label, [r.id for r in runs])
    for run in tables.all_runs(session):
        out[f"run-{run.id}"] = (f"{describe.run_label(run)} · {words.size_text(run_bytes.get(run.id, 0))}", [run.id])
    return out


class NotComparable(Exception):
    """Runs whose test predictions cannot be lined up, in plain words."""
