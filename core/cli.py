"""Command line: `python -m core COMMAND`. Every failure (refused input, a file or a database that cannot be used,
a bug) exits non-zero with one plain `error:` line on stderr; a bug's traceback goes to a file that line names."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError

from core import i18n
from core.data import checking, datasets, reading
from core.i18n import N_, _, ngettext
from core.jobs.runs import MAX_REPEATS, ConfigError, create_comparison, create_run, request_cancel, resume_run, summary
from core.results import tables
from core.store.db import (
    Dataset,
    Run,
    RunStatus,
    Study,
    database_problem,
    interrupts_deferred,
    open_database,
    session_factory,
    utcnow,
)
from core.store.settings import Settings, SettingsError, get_settings
from core.training import models
from core.training.artifacts import trained_model
from core.training.config import TrainConfig, defaults_in_words
from core.words import text_width


class Refused(Exception):
    """Input the command cannot use; printed as is, exit status 2."""


def _listed(items) -> str:
    """Items as a list in the reader's language: 'run 3, run 4'."""
    return _(", ").join(items)


def _shares(text: str) -> tuple[int, ...]:
    parts = text.replace("/", ",").split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() for p in parts):
        raise Refused(
            _("--split takes three whole percentages, train,dev,test (e.g. 80,10,10); got '{text}'.", text=text)
        )
    return tuple(int(p) for p in parts)


def _dataset_from_files(session, settings, args) -> Dataset:
    given = [f"--{s}" for s in ("train", "dev", "test") if getattr(args, s)]
    if args.data and given:
        raise Refused(
            _(
                "Give either --data (one file, split for you) or --train, --dev and --test, not both ({flag}).",
                flag=given[0],
            )
        )
    if not args.data and len(given) < 3:
        raise Refused(_("Give --train, --dev and --test, or one file with --data to have it split for you."))
    files = {"data": args.data} if args.data else {"train": args.train, "dev": args.dev, "test": args.test}
    try:
        split_files = {split: reading.SplitFile.from_path(path) for split, path in files.items()}
        names = reading.read_class_names(Path(args.classes).read_bytes(), args.classes) if args.classes else None
    except OSError as e:
        raise Refused(f"{e.filename}: {e.strerror}.") from None
    except reading.DataError as e:
        raise Refused("\n".join(e.problems)) from None
    tokenizer = models.load_tokenizer(args.model, settings)  # to warn about texts longer than max_length
    max_length = args.max_length or TrainConfig.max_length
    columns = (args.text_column, args.label_column, names, tokenizer, max_length)
    if args.data:
        shares = _shares(args.split)
        check = checking.check_one_file(split_files["data"], settings, *columns, shares=shares, seed=args.split_seed)
    else:
        check = checking.check_dataset(split_files, settings, *columns)
    if not check.ok:
        raise Refused(_("The data was refused; nothing was stored:\n- {problems}", problems="\n- ".join(check.errors)))
    for warning in check.warnings:
        print(_("warning: {warning}", warning=warning), file=sys.stderr)
    existing = datasets.find_same_dataset(session, check)
    if existing is not None:
        return existing
    stem = Path(args.data).stem if args.data else Path(args.train).resolve().parent.name
    stem = re.sub(r"[^\w -]+", "-", stem).strip("- ")[:80]  # a folder named news..v2: news-v2
    name = f"{stem or 'dataset'}-{datasets.content_hash(check)[:8]}"
    return datasets.save_dataset(session, settings, check, name)


def _coverage(settings, dataset: Dataset, model: str) -> float | None:
    """The share of the training texts' tokens the model does not know; what it means is said (on stderr) before
    anything is queued."""
    from core.training import coverage

    found = coverage.dataset_coverage(settings, dataset, model)
    if found.warning():
        print(_("warning: {warning}", warning=found.warning()), file=sys.stderr)
    return found.unknown_token_share


def _config(args) -> TrainConfig:
    values = {
        "method": args.method,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.lr,
        "max_length": args.max_length,
        "seed": args.seed,
    }
    return TrainConfig(**{k: v for k, v in values.items() if v is not None})


def _configs(args) -> dict[str, TrainConfig]:
    """Method -> config of the run, or of both runs of a --pair, each with its own learning rate (--lr-full,
    --lr-lora; a bare --lr says no method and is refused with --pair). Refused: settings that cannot train."""
    rates = {m: getattr(args, f"lr_{m}") for m in ("full", "lora")}
    if not args.pair and any(r is not None for r in rates.values()):
        flag = "--lr-full" if rates["full"] is not None else "--lr-lora"
        raise Refused(_("{flag} is for --pair (full fine-tuning and LoRA); a single run takes --lr.", flag=flag))
    if any(r is not None and len(r) > 1 for r in rates.values()):
        raise Refused(
            _(
                "With --pair, --lr-full and --lr-lora take one rate each; rates to try make a study: "
                "python -m core study --vary lr."
            )
        )
    rates = {m: r[0] if r else None for m, r in rates.items()}
    if args.pair and args.lr is not None:
        raise Refused(_("With --pair, --lr does not say which method it is for: give --lr-full and/or --lr-lora."))
    if args.pair and args.method is not None:
        raise Refused(_("--pair trains both methods, full fine-tuning and LoRA: leave out --method."))
    config = _config(args)
    if args.pair:
        configs = {
            m: TrainConfig.from_dict({**config.to_dict(), "method": m, "learning_rate": rates[m]}) for m in rates
        }
    else:
        configs = {config.method: config}
    problems = list(dict.fromkeys(p for c in configs.values() for p in c.problems()))
    if problems:
        raise Refused(_("The settings were refused:\n- {problems}", problems="\n- ".join(problems)))
    return configs


def _queue(args, status: RunStatus) -> tuple:
    """Record the run (or, with --pair, the comparison group's runs, queued). Returns (settings, run ids, group id,
    the share of the training texts' tokens the model does not know)."""
    settings = _open(args)
    sessions = session_factory(settings.db_url)
    with sessions() as session:
        configs = _configs(args)
        if args.repeats != 1 and not args.pair:
            raise Refused(_("--repeats needs --pair: it repeats a full fine-tuning + LoRA pair with the next seeds."))
        dataset = _dataset_from_files(session, settings, args)
        unknown = _coverage(settings, dataset, args.model)
        from core.jobs.estimate import estimate_or_none

        try:
            if args.pair:
                estimates = {
                    m: estimate_or_none(settings, session, dataset, args.model, c) for m, c in configs.items()
                }
                rates = {m: c.learning_rate for m, c in configs.items()}
                group, runs = create_comparison(
                    session, dataset, args.model, configs["full"], rates, estimates=estimates, repeats=args.repeats
                )
                return settings, [r.id for r in runs], group.id, unknown
            (config,) = configs.values()
            estimate = estimate_or_none(settings, session, dataset, args.model, config)
            run = create_run(session, dataset, args.model, config, status=status, estimate=estimate)
        except ConfigError as e:
            raise Refused(" ".join(e.problems)) from None
        return settings, [run.id], None, unknown


def _claim(settings, run_id: int) -> bool:
    """Take a queued run to train it here; False if a worker took it first (it then trains it)."""
    with session_factory(settings.db_url)() as s:
        now = utcnow()
        taken = s.execute(
            update(Run)
            .where(Run.id == run_id, Run.status == RunStatus.QUEUED.value)
            .values(status=RunStatus.RUNNING.value, started_at=now, heartbeat_at=now)
        ).rowcount
        s.commit()
    return taken == 1


def _wait_until_finished(settings, run_id: int) -> RunStatus:
    while True:
        with session_factory(settings.db_url, read_only=True)() as s:
            status = s.get(Run, run_id).run_status
        if status.finished:
            return status
        time.sleep(2)


def cmd_train(args) -> int:
    from core.jobs.worker import supervise

    settings, run_ids, group_id, unknown = _queue(args, RunStatus.RUNNING)
    statuses = []
    for run_id in run_ids:
        try:
            if group_id is None or _claim(settings, run_id):
                with session_factory(settings.db_url, read_only=True)() as s:
                    run = s.get(Run, run_id)
                    what = _("{method}, seed {seed}", method=run.method, seed=run.config.get("seed"))
                print(_("run {run}: training ({what}) ...", run=run_id, what=what), file=sys.stderr)
                statuses.append(supervise(settings, run_id))  # Ctrl+C: it cancels the run and waits for its end
            else:
                print(_("run {run}: the worker is training it; waiting ...", run=run_id), file=sys.stderr)
                statuses.append(_wait_until_finished(settings, run_id))
        except KeyboardInterrupt:
            with interrupts_deferred(), session_factory(settings.db_url)() as s:
                for rest in run_ids[run_ids.index(run_id) :]:
                    request_cancel(s, rest)
            print(_("run {run}: cancel requested", run=run_id), file=sys.stderr)
            return 130
    ok = all(status == RunStatus.COMPLETED for status in statuses)
    if group_id is None:
        return _print_run(settings, run_ids[0], args.json, ok=ok, unknown_token_share=unknown)
    if args.json:
        with session_factory(settings.db_url, read_only=True)() as s:
            runs = [summary(s.get(Run, i)) for i in run_ids]
        print(json.dumps({"group": group_id, "runs": runs, "unknown_token_share": unknown}, ensure_ascii=False))
    else:
        print(_("comparison group {group}", group=group_id))
        for run_id in run_ids:
            _print_run(settings, run_id, False)
        print(_("verdict: python -m core compare {group}", group=group_id))
    return 0 if ok else 1


def _print_run(settings, run_id: int, as_json: bool, ok: bool = True, **extra) -> int:
    """The run's summary; `extra` keys are added to its JSON object."""
    with session_factory(settings.db_url)() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise Refused(_("There is no run {run}.", run=run_id))
        info = summary(run) | extra
    if as_json:
        print(json.dumps(info, ensure_ascii=False))
    else:
        print(
            _(
                "run {run}: {status} ({method}, {model})",
                run=info["run_id"],
                status=tables.status_text(info["status"]),
                method=info["method"],
                model=models.describe(info["model"]),
            )
        )
        if info["error"]:
            print(f"  {info['error']}")
        if info["test"]:
            t = info["test"]
            print(
                "  "
                + _(
                    "test accuracy {accuracy:.4f}  precision (weighted) {precision:.4f}  "
                    "recall (weighted) {recall:.4f}  macro-F1 {f1:.4f}",
                    accuracy=t["accuracy"],
                    precision=t["precision_weighted"],
                    recall=t["recall_weighted"],
                    f1=t["f1_macro"],
                )
            )
            print(
                "  "
                + _(
                    "{seconds:.1f} s, {speed:.1f} samples/s, {trainable} of {total} parameters trained",
                    seconds=info["train_seconds"],
                    speed=info["samples_per_second"],
                    trainable=i18n.number(info["trainable_params"]),
                    total=i18n.number(info["total_params"]),
                )
            )
    return 0 if ok else 1


def cmd_submit(args) -> int:
    if args.study:
        settings, study_id, run_ids, __ = _queue_study(args)
        print(json.dumps({"study": study_id, "runs": run_ids}) if args.json else study_id)
        _say_worker(settings)
        return 0
    given = [f"--{name}" for name in ("vary", "seeds", "values") if getattr(args, name) is not None]
    if given:
        raise Refused(
            _("{flag} is for a study: add --study (python -m core submit --study --vary ...).", flag=given[0])
        )
    if args.json:
        raise Refused(
            _("submit prints the id of the run (or, with --pair, of the comparison group); --json is for --study.")
        )
    __, run_ids, group_id, __ = _queue(args, RunStatus.QUEUED)
    print(run_ids[0] if group_id is None else group_id)
    return 0


def _say_worker(settings) -> None:
    """Queued runs train in the worker: say how to start one if none serves this database."""
    from core.jobs.worker import worker_alive

    if not worker_alive(settings):
        print(
            _(
                "No worker is running for this database: start one with `python -m core worker` (with the same --db), "
                "or open the dashboard, which starts one."
            ),
            file=sys.stderr,
        )


def _study_request(args) -> tuple[str, list | None, dict | None]:
    """The study the options ask for, (vary, values, grids), checked before any data is read. Refused: options of a
    single run or a pair, and options of another kind of study."""
    from core.results.studies import VARIES

    vary = args.vary
    if vary not in VARIES:
        if vary:
            raise Refused(
                _("A study needs --vary: one of {choices}, not '{vary}'.", choices=", ".join(VARIES), vary=vary)
            )
        raise Refused(_("A study needs --vary: one of {choices}.", choices=", ".join(VARIES)))
    if args.method is not None:
        raise Refused(_("A study trains both methods, full fine-tuning and LoRA: leave out --method."))
    if args.pair:
        raise Refused(_("A study is made of full fine-tuning and LoRA pairs already: leave out --pair."))
    if args.repeats != 1:
        raise Refused(_("--repeats is for --pair; a study takes --seeds N."))
    if args.lr is not None:
        raise Refused(
            _(
                "A study sets each method's own learning rate, and --lr names no method: with --vary lr, give the "
                "rates to try with --lr-full and --lr-lora."
            )
        )
    grids = {m: getattr(args, f"lr_{m}") for m in ("full", "lora")}
    if vary != "lr":
        flag = next((f"--lr-{m}" for m, rates in grids.items() if rates is not None), None)
        if flag:
            raise Refused(
                _(
                    "{flag} gives the rates a learning-rate study tries (--vary lr); a {vary} study trains each "
                    "method at its default rate.",
                    flag=flag,
                    vary=vary,
                )
            )
        values = args.values
        if values is not None and any(v != int(v) for v in values):
            raise Refused(
                _(
                    "--values takes whole numbers with --vary {vary} (e.g. {example}).",
                    vary=vary,
                    example=_EXAMPLES[vary],
                )
            )
        return vary, None if values is None else [int(v) for v in values], None
    if args.values is not None:
        raise Refused(
            _(
                "--values is for --vary train_size or lora_rank; a learning-rate study takes each method's rates "
                "with --lr-full and --lr-lora."
            )
        )
    return vary, None, grids


_LR_HELPS = {  # --lr-full, --lr-lora
    "full": N_(
        "with --pair: full fine-tuning's learning rate (default as --lr); in a study with --vary lr: the rates it "
        "tries, LR,... (default: five on a log scale, the method's default among them)"
    ),
    "lora": N_(
        "with --pair: LoRA's learning rate (default as --lr); in a study with --vary lr: the rates it "
        "tries, LR,... (default: five on a log scale, the method's default among them)"
    ),
}
_EXAMPLES = {"train_size": "100,250,500,1000", "lora_rank": "1,4,16"}


def _queue_study(args) -> tuple[Settings, int, list[int], dict | None]:
    """Record the study and queue its runs, as the Train page would. Returns (settings, study id, the ids of the runs
    queued, its time from each method's estimate: core.jobs.studies.study_seconds, or None)."""
    from core.jobs import studies
    from core.jobs.estimate import estimate_or_none

    settings = _open(args)  # first, as every command: a database it cannot use is the first thing it says
    vary, values, grids = _study_request(args)
    with session_factory(settings.db_url)() as session:
        # Both methods at the rates `train --pair` uses: the settings are refused here in the same words
        pair_args = argparse.Namespace(**{**vars(args), "pair": True, "lr_full": None, "lr_lora": None})
        configs = _configs(pair_args)
        dataset = _dataset_from_files(session, settings, args)
        _coverage(settings, dataset, args.model)
        estimates = {m: estimate_or_none(settings, session, dataset, args.model, c) for m, c in configs.items()}
        seeds = 3 if args.seeds is None else args.seeds
        try:
            study, runs = studies.create_study(
                session, dataset, args.model, _config(args), vary, seeds, values, grids, estimates=estimates
            )
        except ConfigError as e:
            raise Refused(" ".join(e.problems)) from None
        seconds = None
        if all(estimates.values()):
            seconds = studies.study_seconds(vary, seeds, study.grid, estimates, dataset.sizes["train"])
        return settings, study.id, [r.id for r in runs], seconds


def cmd_study(args) -> int:
    from core.words import duration_text

    settings, study_id, __, seconds = _queue_study(args)
    if seconds is not None:
        print(
            _(
                "study {study}: about {runs} runs, at most {most} (likely {likely})",
                study=study_id,
                runs=seconds["runs"],
                most=duration_text(seconds["most"]),
                likely=duration_text(seconds["likely"]),
            ),
            file=sys.stderr,
        )
    try:
        ok = _train_study(settings, study_id)
    except KeyboardInterrupt:
        from core.results.studies import study_runs

        with interrupts_deferred(), session_factory(settings.db_url)() as s:
            for run in study_runs(s, study_id):
                if run.status in (RunStatus.QUEUED.value, RunStatus.RUNNING.value):
                    request_cancel(s, run.id)
        print(_("study {study}: cancel requested", study=study_id), file=sys.stderr)
        return 130
    _print_study(settings, study_id, args.json, table=True)
    return 0 if ok else 1


def _train_study(settings, study_id: int) -> bool:
    """Train the study's runs here, oldest first, as the worker would (a run the worker took first is left to it and
    waited for), advancing a learning-rate study to its chosen rates; until none is queued or running. Returns
    whether every run completed (one the pruner stopped early completes too)."""
    from core.jobs.runners import WarmStart

    warm = WarmStart(settings)  # the next run's process started ahead, as the worker does: a study's runs are short
    try:
        return _train_runs(settings, study_id, warm)
    finally:
        warm.close()


def _train_runs(settings, study_id: int, warm) -> bool:
    from core.jobs import studies
    from core.jobs.worker import supervise
    from core.results.studies import study_runs

    sessions = session_factory(settings.db_url)
    said = set()  # the chosen rates announced (a run's supervisor queues them as the study's last rate ends)
    while True:
        with sessions() as s:
            study = s.get(Study, study_id)
            studies.advance(s, study)  # a study whose last rate ended before this command started
            runs = study_runs(s, study_id)
            for run in runs:
                chosen = (run.method, run.config["learning_rate"])
                if run.study_role == "final" and chosen not in said:
                    said.add(chosen)
                    print(
                        ngettext(
                            "study {study}: {method}'s best rate on the dev set is {rate:g}; training it on {n} "
                            "fresh seed",
                            "study {study}: {method}'s best rate on the dev set is {rate:g}; training it on {n} "
                            "fresh seeds",
                            study.seeds,
                            study=study_id,
                            method=run.method,
                            rate=chosen[1],
                        ),
                        file=sys.stderr,
                    )
            queued = [r.id for r in runs if r.status == RunStatus.QUEUED.value]
            running = [r.id for r in runs if r.status == RunStatus.RUNNING.value]
            if not queued and not running:
                return all(r.status == RunStatus.COMPLETED.value for r in runs)
            run_id = queued[0] if queued else running[0]
            what = _study_run_text(study, s.get(Run, run_id))
        if queued and _claim(settings, run_id):
            print(_("run {run}: training ({what}) ...", run=run_id, what=what), file=sys.stderr)
            supervise(settings, run_id, warm)  # Ctrl+C: it cancels the run and waits for its end
        elif queued:
            continue  # the worker took it first: on to the next
        else:
            print(
                _("run {run}: the worker is training it ({what}); waiting ...", run=run_id, what=what), file=sys.stderr
            )
            _wait_until_finished(settings, run_id)
        with sessions() as s:
            run = s.get(Run, run_id)
            if run.stopped_early:
                print(
                    _(
                        "run {run}: stopped early at step {step} of {total}: its dev loss was clearly behind the "
                        "other rates",
                        run=run_id,
                        step=run.step,
                        total=run.total_steps,
                    ),
                    file=sys.stderr,
                )
            elif run.status != RunStatus.COMPLETED.value:
                status = tables.status_text(run.status)
                print(
                    _("run {run}: {status}: {error}", run=run_id, status=status, error=run.error)
                    if run.error
                    else _("run {run}: {status}", run=run_id, status=status),
                    file=sys.stderr,
                )


def _study_run_text(study: Study, run: Run) -> str:
    """'full, lr 5e-05, seed 42'; '100 training rows' or 'r = 4' where that is what the study varies."""
    config = run.config
    parts = [run.method]
    if study.vary == "train_size":
        parts.append(ngettext("{n} training row", "{n} training rows", config["train_rows"]))
    elif study.vary == "lora_rank" and run.method == "lora":
        parts.append(f"r = {config['lora_r']}")
    parts += [_("lr {rate:g}", rate=config["learning_rate"]), _("seed {seed}", seed=config["seed"])]
    if run.study_role == "final":
        parts.append(_("the best rate on dev, on a fresh seed"))
    return _listed(parts)


def _study_of(session, study_id: int) -> Study:
    study = session.get(Study, study_id)
    if study is None:
        raise Refused(_("There is no study {study}.", study=study_id))
    return study


def _print_study(settings, study_id: int, as_json: bool, table: bool = False, runs: bool = False) -> None:
    """The study's summary: with as_json the one object (core.results.studies.summary), else its label, its
    sentence, the table of its points (table), its runs (runs), its verdicts and notes."""
    from core.results import studies as found
    from core.words import percent

    with session_factory(settings.db_url, read_only=True)() as s:
        study = _study_of(s, study_id)
        info = found.summary(s, study)
        label = found.study_label(study)
        listed = [(r, _study_run_text(study, r)) for r in found.study_runs(s, study_id)] if runs else []
        planned = found.study_progress(study, found.study_runs(s, study_id))["planned"]
    if as_json:
        print(json.dumps(info, ensure_ascii=False))
        return
    print(label)
    if runs:
        counts = _listed(
            _("{count} {status}", count=n, status=tables.status_text(status)) for status, n in info["status"].items()
        )
        recorded = sum(info["status"].values())
        print(
            _(
                "{recorded} of about {planned} runs recorded: {counts}",
                recorded=recorded,
                planned=planned,
                counts=counts,
            )
        )
        for run, what in listed:
            said = {"run": run.id, "status": tables.status_text(run.status), "what": what}
            if run.test_metrics:
                said["accuracy"] = percent(run.test_metrics["accuracy"])
                line = (
                    _("run {run}: {status}, stopped early ({what}), test accuracy {accuracy}", **said)
                    if run.stopped_early
                    else _("run {run}: {status} ({what}), test accuracy {accuracy}", **said)
                )
            else:
                line = (
                    _("run {run}: {status}, stopped early ({what})", **said)
                    if run.stopped_early
                    else _("run {run}: {status} ({what})", **said)
                )
            print("  " + line)
    if info["sentence"]:
        print(info["sentence"])
    if table:
        rows = [
            (
                found.value_text(study.vary, p["value"]),
                p["method"],
                percent(p["dev"]["accuracy"]),
                percent(p["test"]["accuracy"]),
                _("yes") if p["stopped_early"] else "",
            )
            for p in info["points"]
        ]
        header = (_(found.VARY_NAMES[study.vary]), _("method"), _("dev acc"), _("test acc"), _("stopped early"))
        widths = [max(text_width(row[k]) for row in [header, *rows]) for k in range(len(header))]
        for row in [header, *rows]:
            print("  ".join(cell + " " * (width - text_width(cell)) for cell, width in zip(row, widths)).rstrip())
    none_yet = _("none yet (no pair has completed)")
    if study.vary == "lr":
        named = {
            "verdict": N_("verdict each at its best rate on dev: {verdict}"),
            "default_verdict": N_("verdict at the default rates: {verdict}"),
        }
        for key, sentence in named.items():
            verdict = info[key]
            print(_(sentence, verdict=verdict["lines"][1] if verdict else none_yet))
    else:
        for verdict in info["verdict"]:
            said = verdict["lines"][1] if verdict["verdict"] else none_yet
            value = found.value_text(study.vary, verdict["value"])
            if study.vary == "train_size":
                print(_("verdict at {value} training rows: {verdict}", value=value, verdict=said))
            else:
                print(_("verdict at {value}: {verdict}", value=value, verdict=said))
    for note in info["notes"]:
        print(_("note: {note}", note=note))


def cmd_compare(args) -> int:
    from core.results import comparisons
    from core.results.comparisons import NotComparable
    from core.results.tables import runs_by_id

    settings = get_settings(args.db)
    ids = args.ids
    if args.study is not None:
        if ids:
            raise Refused(_("Give --study ID alone: a study's verdicts come from its own runs."))
        open_database(settings.db_url)
        _print_study(settings, args.study, args.json)
        return 0
    if not ids:
        raise Refused(_("Give one comparison group id, two or more run ids, or --study ID."))
    if not all(i.isdigit() for i in ids):
        raise Refused(_("Ids are whole numbers; got {ids}.", ids=" ".join(ids)))
    open_database(settings.db_url)
    with session_factory(settings.db_url, read_only=True)() as s:
        if len(ids) == 1:
            runs = comparisons.group_runs(s, int(ids[0]))
            if not runs:
                raise Refused(
                    _(
                        "There is no comparison group {group}. Give a group id (printed by submit --pair), "
                        "or two or more run ids.",
                        group=ids[0],
                    )
                )
            runs = [r for pair in comparisons.completed_pairs(runs) for r in pair]  # the pairs the page compares
            if not runs:
                raise Refused(
                    _("Comparison group {group} has no pair whose two runs both completed yet.", group=ids[0])
                )
        else:
            runs = runs_by_id(s, [int(i) for i in ids])
            missing = sorted({int(i) for i in ids} - {r.id for r in runs})
            if missing:
                raise Refused(_("There is no run {run}.", run=missing[0]))
        try:
            result = comparisons.compare_summary(s, runs)
        except NotComparable as e:
            raise Refused(str(e)) from None
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print("\n".join(result["lines"]))
        counted = {"seeds": result["seeds"], "texts": result["test_size"]}
        if result["mcnemar_p"] is not None:
            print(
                "  " + _("{seeds} seed(s), {texts} test texts, McNemar p = {p:.3g}", p=result["mcnemar_p"], **counted)
            )
        else:
            print("  " + _("{seeds} seed(s), {texts} test texts", **counted))
        if result["costs_sentence"]:
            print(result["costs_sentence"])
    return 0


def cmd_status(args) -> int:
    settings = _open(args)
    if args.study is not None:
        if args.run_id is not None:
            raise Refused(_("Give a run id or --study ID, not both."))
        _print_study(settings, args.study, args.json, runs=True)
        return 0
    if args.run_id is None:
        raise Refused(_("Give a run id, or --study ID for a study."))
    return _print_run(settings, args.run_id, args.json)


def cmd_cancel(args) -> int:
    settings = _open(args)
    with session_factory(settings.db_url)() as s:
        run = request_cancel(s, args.run_id)
        if run is None:
            raise Refused(_("There is no run {run}.", run=args.run_id))
        if run.status == "running":
            print(_("run {run}: cancel requested", run=run.id))
        else:
            print(_("run {run}: {status}", run=run.id, status=tables.status_text(run.status)))
    return 0


def cmd_resume(args) -> int:
    settings = _open(args)
    with session_factory(settings.db_url)() as s:
        try:
            step = resume_run(s, settings, args.run_id)
        except ValueError as e:
            raise Refused(str(e)) from None
        trained = trained_model(settings, s.get(Run, args.run_id)) is not None
    if trained:
        print(_("run {run}: training had finished; queued to resume with test scoring", run=args.run_id))
    else:
        print(_("run {run}: queued to resume from step {step}", run=args.run_id, step=step))
    return 0


def _ask(question: str) -> bool:
    """One question on the terminal; no one to answer it (no input) refuses, in plain words."""
    print(question, file=sys.stderr)
    try:
        answer = input(_("Go ahead? [y/N] "))
    except EOFError:
        raise Refused(
            _("Nothing was deleted: no one answered the question. Add --yes to go ahead without it.")
        ) from None
    return answer.strip().lower() in ("y", "yes")


def cmd_delete(args) -> int:
    from core.results import comparisons
    from core.store import storage
    from core.store.storage import deletion_text
    from core.words import size_text

    settings = _open(args)
    if args.leftovers:
        return _delete_leftovers(settings, args)
    with session_factory(settings.db_url, read_only=True)() as s:  # no lock is held while the question waits
        run_ids = list(args.run_ids)
        for group_id in args.group or []:
            found = comparisons.group_runs(s, group_id)
            if not found:
                raise Refused(_("There is no comparison group {group}.", group=group_id))
            run_ids += [r.id for r in found]
        if not run_ids:
            raise Refused(_("Give the runs to delete (their ids), or --group G for a whole comparison."))
        plan = storage.plan_deletion(s, settings, run_ids)
    if plan.refused:
        raise Refused(_("Nothing was deleted. {reasons}", reasons=" ".join(plan.refused)))
    if not args.yes and not _ask(deletion_text(plan)):
        print(_("Nothing was deleted."))
        return 1
    with session_factory(settings.db_url)() as s:
        try:
            done = storage.delete_runs(s, settings, run_ids)
        except storage.DeleteRefused as e:  # one was resumed, or a file queued with it, meanwhile
            raise Refused(_("Nothing was deleted. {reasons}", reasons=e)) from None
    deleted = _listed(_("run {run}", run=i) for i in done.run_ids)
    print(_("Deleted {runs}; freed {size}.", runs=deleted, size=size_text(done.bytes)))
    return 0


def _delete_leftovers(settings, args) -> int:
    from core.store import storage
    from core.words import size_text

    if args.run_ids or args.group:
        raise Refused(_("Give --leftovers alone: it removes files no row points to, not runs."))
    with session_factory(settings.db_url, read_only=True)() as s:
        use = storage.disk_use(s, settings)
    if not use.owned:
        raise Refused(_("Nothing was removed. {reason}", reason=storage.not_owned_text(settings)))
    if not use.leftovers:
        print(_("There is nothing to remove: a row points to every folder in the data folder."))
        return 0
    question = ngettext(
        "Remove {n} folder no row points to ({size}) from {folder}? There is no undo.",
        "Remove {n} folders no row points to ({size}) from {folder}? There is no undo.",
        len(use.leftovers),
        size=size_text(use.leftover_bytes),
        folder=settings.data_dir,
    )
    if not args.yes and not _ask(question):
        print(_("Nothing was removed."))
        return 1
    with session_factory(settings.db_url, read_only=True)() as s:
        try:
            removed, freed = storage.delete_leftovers(s, settings)
        except storage.DeleteRefused as e:
            raise Refused(str(e)) from None
    print(
        ngettext(
            "Removed {n} folder no row pointed to; freed {size}.",
            "Removed {n} folders no row pointed to; freed {size}.",
            removed,
            size=size_text(freed),
        )
    )
    return 0


def cmd_disk(args) -> int:
    from core.store import storage
    from core.store.storage import disk_text, leftovers_text

    settings = _open(args)
    with session_factory(settings.db_url, read_only=True)() as s:
        use = storage.disk_use(s, settings)
    if args.json:
        info = {
            "data_dir": str(settings.data_dir),
            "runs": {str(i): b for i, b in use.runs.items()},
            "datasets": use.datasets,
            "labels": use.labels,
            "total": use.total,
            "leftovers": [str(p.relative_to(settings.data_dir)) for p in use.leftovers],
            "leftover_bytes": use.leftover_bytes,
            "owned": use.owned,
        }
        print(json.dumps(info, ensure_ascii=False))
        return 0
    print(disk_text(use))
    if leftovers := leftovers_text(use, settings):
        print(leftovers)
    return 0


def cmd_estimate(args) -> int:
    """Estimate without training: the run (or, with --pair, both runs) as the Train page would queue it."""
    from core.jobs.estimate import estimate_run

    settings = _open(args)
    with session_factory(settings.db_url)() as session:
        configs = _configs(args)
        dataset = _dataset_from_files(session, settings, args)
        unknown = _coverage(settings, dataset, args.model)
        out = {
            method: estimate_run(settings, session, dataset, args.model, c) | {"unknown_token_share": unknown}
            for method, c in configs.items()
        }
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
    else:
        for method, e in out.items():
            print(
                _(
                    "{method}: train {train:.0f} s, test scoring {score:.1f} s, peak memory {memory:.0f} MB "
                    "({similar} similar finished runs)",
                    method=method,
                    train=e["train_seconds"],
                    score=e["score_seconds"],
                    memory=e["peak_memory_mb"],
                    similar=e["similar_runs"],
                )
            )
    return 0


def cmd_worker(args) -> int:
    from core.jobs.worker import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        return run_worker(
            get_settings(args.db),
            exit_when_idle=args.exit_when_idle,
            dashboard_pid=args.dashboard_pid,
            idle_exit_s=args.idle_exit_s,
        )
    except KeyboardInterrupt:  # the runs in training were cancelled and have ended (core.jobs.worker.run_worker)
        print(_("worker stopped"), file=sys.stderr)
        return 130


def _predictor(settings, run_id: int) -> tuple:
    """(the run, its loaded model), or Refused saying why there is none."""
    from core.training.predict import RunNotReady, load_run

    with session_factory(settings.db_url)() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise Refused(_("There is no run {run}.", run=run_id))
        try:
            return run, load_run(settings, run)
        except RunNotReady as e:
            raise Refused(str(e)) from None


def cmd_predict(args) -> int:
    settings = _open(args)
    run, predictor = _predictor(settings, args.run)
    if args.file:
        return _label_file(settings, args, run, predictor)
    if args.text is None:
        raise Refused(_("Give a text to label, or --file with a CSV or text file of them."))
    label, probs = predictor.predict(args.text)
    if args.json:
        print(json.dumps({"run_id": args.run, "label": label, "probabilities": probs}, ensure_ascii=False))
    else:
        print(label)
        for name, p in sorted(probs.items(), key=lambda kv: -kv[1]):
            print(f"  {p:6.1%}  {name}")
    return 0


def cmd_explain(args) -> int:
    from core.training.explain import CannotExplain, explain
    from core.words import percent

    if not args.text.strip():
        raise Refused(_("The text is empty: give --text with the words to explain."))
    __, predictor = _predictor(_open(args), args.run)
    try:
        found = explain(predictor, args.text, args.target)
    except CannotExplain as e:
        raise Refused(str(e)) from None
    if args.json:
        print(json.dumps(found.to_json(), ensure_ascii=False))
        return 0
    print(
        _(
            "{label} ({probability}); each word's points for '{target}':",
            label=found.label,
            probability=percent(found.probability),
            target=found.target,
        )
    )
    width = max(len(w.text) for w in found.words)
    for word in found.words:
        points = _("not read") if word.score is None else f"{100 * word.score:+6.1f}"
        print(f"  {points:>8}  {word.text:<{width}}")
    print(found.summary())
    print(
        _(
            "({steps} steps, {seconds:.2f} s, convergence delta {delta:+.4f})",
            steps=found.steps,
            seconds=found.seconds,
            delta=found.delta,
        )
    )
    return 0


def _label_file(settings, args, run: Run, predictor) -> int:
    from core.results import labels

    if not args.out:
        raise Refused(_("Give --out OUT.csv, the file to write the labelled rows to."))
    try:
        text_file = reading.read_text_file(reading.SplitFile.from_path(args.file), settings)
        column = labels.check_file(text_file, args.text_column, settings)
    except reading.DataError as e:
        raise Refused(
            _("The file was refused; nothing was labelled:\n- {problems}", problems="\n- ".join(e.problems))
        ) from None
    out = Path(args.out)
    if not out.parent.is_dir():
        raise Refused(
            _(
                "--out {out}: there is no folder {folder}. Create it, or give a file in a folder that exists.",
                out=out,
                folder=out.parent,
            )
        )
    rows = labels.label_rows(text_file, column, {labels.run_name(run): predictor}, out, args.all_probabilities)
    print(_("{rows} rows labelled with run {run}: {out}", rows=rows, run=args.run, out=out), file=sys.stderr)
    return 0


def cmd_export(args) -> int:
    from core.results.comparisons import launched_with
    from core.results.export import ExportError, export_run, export_zip
    from core.training.predict import RunNotReady

    settings = _open(args)
    out = Path(args.out)
    with session_factory(settings.db_url)() as s:
        run = s.get(Run, args.run_id)
        if run is None:
            raise Refused(_("There is no run {run}.", run=args.run_id))
        comparison_sentence = launched_with(s, run)
        try:
            if args.zip:
                zipped = out.with_name(out.name.removesuffix(".zip") + ".zip")
                done = export_zip(settings, run, zipped, args.merged, comparison_sentence)
            else:
                done = export_run(settings, run, out, args.merged, comparison_sentence)
        except (RunNotReady, ExportError) as e:
            raise Refused(str(e)) from None
    print(done)
    return 0


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train", help=_("training CSV"))
    p.add_argument("--dev", help=_("dev (validation) CSV"))
    p.add_argument("--test", help=_("test CSV"))
    p.add_argument("--data", help=_("one labelled CSV instead of the three: split, stratified by class, for you"))
    p.add_argument("--split", default="80,10,10", help=_("with --data: train,dev,test shares in percent"))
    p.add_argument("--split-seed", type=int, default=0, help=_("with --data: the seed of the split"))
    p.add_argument("--method", choices=["full", "lora"], help=_("of a single run (default: lora)"))
    p.add_argument("--pair", action="store_true", help=_("full fine-tuning and LoRA, as one comparison group"))
    p.add_argument(
        "--repeats",
        type=int,
        default=1,
        choices=range(1, MAX_REPEATS + 1),
        metavar="N",
        help=_("with --pair: N pairs with seeds s, s+1, ... (1 to {most})", most=MAX_REPEATS),
    )
    p.add_argument("--model", default=models.BUNDLED, help=_("bundled model (default), Hugging Face id, or folder"))
    p.add_argument("--epochs", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument(
        "--lr", type=float, help=_("learning rate of a single run (default: {defaults})", defaults=defaults_in_words())
    )
    for method, helps in _LR_HELPS.items():
        p.add_argument(f"--lr-{method}", type=numbers, metavar="LR", help=_(helps))
    p.add_argument("--max-length", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--text-column", help=_("default: '0' if present, else guessed"))
    p.add_argument("--label-column", help=_("default: '1' if present, else guessed"))
    p.add_argument("--classes", help=_("a text file naming integer label i on line i"))


def _study_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--vary", help=_("the setting the study varies: lr, train_size or lora_rank"))
    p.add_argument(
        "--seeds",
        type=int,
        metavar="N",
        help=_("lr: the fresh seeds each method's best rate is trained on; otherwise each point's seeds (default 3)"),
    )
    p.add_argument(
        "--values",
        type=numbers,
        metavar="V,...",
        help=_(
            "train_size: the training-set sizes (default: a few from 100 up, and every row); lora_rank: the ranks "
            "(default: 1 to 64)"
        ),
    )


def numbers(text: str) -> list[float]:
    """Numbers as typed, separated by commas: 1e-4,5e-4 or 100,250,500."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(
            _("'{text}' is not a list of numbers separated by commas, such as 1e-4,5e-4", text=text)
        )
    return values


def run_id(text: str) -> int:
    """A run id as typed: a whole number a database can hold."""
    if not re.fullmatch(r"[0-9]{1,19}", text.strip()) or not 0 < int(text) < 2**63:  # "²".isdigit() is True
        raise argparse.ArgumentTypeError(_("'{text}' is not a run id (a whole number such as 3)", text=text))
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description=_("LoRA Lab engine"))
    sub = parser.add_subparsers(dest="command", required=True)
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", help=_("database URL (default: sqlite runs.db beside app.py, or $LORALAB_DB_URL)"))

    p = sub.add_parser("train", parents=[db], help=_("record a run, train it now, print its results"))
    _run_args(p)
    p.add_argument("--json", action="store_true", help=_("print one JSON object"))
    p.set_defaults(func=cmd_train)
    p = sub.add_parser(
        "submit", parents=[db], help=_("queue a run (or, with --study, a study) for the worker; prints its id")
    )
    _run_args(p)
    p.add_argument("--study", action="store_true", help=_("queue a study: the options of `study`"))
    _study_args(p)
    p.add_argument(
        "--json", action="store_true", help=_('with --study: print {"study": ID, "runs": [the runs queued]}')
    )
    p.set_defaults(func=cmd_submit)
    p = sub.add_parser(
        "study",
        parents=[db],
        help=_("a comparison with one setting varied: record it, train it now, print what it found"),
    )
    _run_args(p)
    _study_args(p)
    p.add_argument("--json", action="store_true", help=_("print one JSON object"))
    p.set_defaults(func=cmd_study)
    p = sub.add_parser("estimate", parents=[db], help=_("how long a run would take and how much memory it would need"))
    _run_args(p)
    p.add_argument("--json", action="store_true", help=_("print one JSON object keyed by method"))
    p.set_defaults(func=cmd_estimate)
    p = sub.add_parser("status", parents=[db], help=_("a run's (or a study's) status and results"))
    p.add_argument("run_id", type=run_id, nargs="?")
    p.add_argument("--study", type=run_id, metavar="ID", help=_("a study's runs, progress and results"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("cancel", parents=[db], help=_("stop a queued or running run"))
    p.add_argument("run_id", type=run_id)
    p.set_defaults(func=cmd_cancel)
    p = sub.add_parser(
        "resume", parents=[db], help=_("queue a crashed, failed or cancelled run to go on from its checkpoint")
    )
    p.add_argument("run_id", type=run_id)
    p.set_defaults(func=cmd_resume)
    p = sub.add_parser("delete", parents=[db], help=_("delete runs with their files (after one question)"))
    p.add_argument("run_ids", nargs="*", type=run_id, metavar="RUN", help=_("the runs to delete"))
    p.add_argument("--group", type=run_id, action="append", metavar="G", help=_("every run of comparison group G"))
    p.add_argument(
        "--leftovers", action="store_true", help=_("remove files no row points to (a data folder of its own)")
    )
    p.add_argument("--yes", action="store_true", help=_("do not ask"))
    p.set_defaults(func=cmd_delete)
    p = sub.add_parser("disk", parents=[db], help=_("the disk the history's files take"))
    p.add_argument("--json", action="store_true", help=_("print one JSON object, sizes in bytes"))
    p.set_defaults(func=cmd_disk)
    p = sub.add_parser("compare", parents=[db], help=_("the verdict: which method wins, by how much, at what cost"))
    p.add_argument("ids", nargs="*", metavar="RUN_OR_GROUP", help=_("one comparison group id, or two or more run ids"))
    p.add_argument("--study", type=run_id, metavar="ID", help=_("a study's verdicts"))
    p.add_argument("--json", action="store_true", help=_("print one JSON object"))
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser(
        "worker", parents=[db], help=_("train queued runs (side by side where they fit), until stopped")
    )
    p.add_argument("--exit-when-idle", action="store_true", help=_("stop when the queue is empty"))
    p.add_argument(
        "--dashboard-pid", type=int, help=_("the dashboard that started it: once that has stopped, leave when idle")
    )
    p.add_argument(
        "--idle-exit-s", type=float, default=300.0, help=_("with --dashboard-pid: idle seconds before leaving (300)")
    )
    p.set_defaults(func=cmd_worker)
    p = sub.add_parser(
        "predict", parents=[db], help=_("label a text, or a file of texts, with a finished run's model")
    )
    p.add_argument("--run", type=run_id, required=True)
    p.add_argument("text", nargs="?")
    p.add_argument("--json", action="store_true")
    p.add_argument("--file", help=_("a CSV, or a .txt file with one text a line, to label"))
    p.add_argument("--text-column", help=_("with --file: the column that holds the texts (default: guessed)"))
    p.add_argument("--out", help=_("with --file: the CSV to write (every input column, then label and probability)"))
    p.add_argument("--all-probabilities", action="store_true", help=_("with --file: every class's probability too"))
    p.set_defaults(func=cmd_predict)
    p = sub.add_parser(
        "explain", parents=[db], help=_("which words of a text led a finished run to its label (Integrated Gradients)")
    )
    p.add_argument("--run", type=run_id, required=True)
    p.add_argument("--text", required=True, help=_("the text to explain"))
    p.add_argument(
        "--target", metavar="CLASS", help=_("explain this class's probability (default: the predicted one)")
    )
    p.add_argument("--json", action="store_true", help=_("print one JSON object"))
    p.set_defaults(func=cmd_explain)
    p = sub.add_parser(
        "export",
        parents=[db],
        help=_("write a run's model as a standard transformers / peft folder, with a model card"),
    )
    p.add_argument("run_id", type=run_id)
    p.add_argument("--out", required=True, help=_("a new folder (with --zip: DIR.zip)"))
    p.add_argument(
        "--merged", action="store_true", help=_("LoRA: merge the adapters in; the folder needs nothing else")
    )
    p.add_argument("--zip", action="store_true", help=_("write one .zip file instead of a folder"))
    p.set_defaults(func=cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    i18n.set_language(i18n.from_environment())  # plain messages follow LANG; --json keys never change
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (Refused, models.ModelSourceError, SettingsError) as e:
        print(_("error: {message}", message=e), file=sys.stderr)
        return 2
    except reading.DataError as e:
        print(_("error: {message}", message="\n".join(e.problems)), file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before a run was recorded (reading the files): nothing to cancel
        print(_("interrupted"), file=sys.stderr)
        return 130
    except SQLAlchemyError as e:  # a database server that is down or refuses; a file that is no database
        print(_("error: {message}", message=database_problem(_db_url(args), e)), file=sys.stderr)
        return 2
    except OSError as e:  # a file or folder that cannot be read or written
        where = ", ".join(str(name) for name in (e.filename, e.filename2) if name is not None)
        print(_("error: {message}", message=f"{where}: {e.strerror or e}." if where else e), file=sys.stderr)
        return 2
    except Exception as e:  # a bug: one line here; the traceback goes to a file, to send with a report
        print(
            _(
                "error: unexpected {kind}: {error}. {report}",
                kind=type(e).__name__,
                error=e,
                report=_traceback_file(e),
            ),
            file=sys.stderr,
        )
        return 2


def _open(args) -> Settings:
    """The settings of a command that uses the database (--db), with the database opened (and migrated: a database
    made by an older LoRA Lab is brought up to date here)."""
    settings = get_settings(args.db)
    open_database(settings.db_url)
    return settings


def _db_url(args) -> str:
    try:
        return get_settings(getattr(args, "db", None)).db_url
    except SettingsError:
        return args.db


def _traceback_file(e: Exception) -> str:
    try:
        fd, path = tempfile.mkstemp(prefix="loralab-error-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            traceback.print_exception(e, file=f)
    except OSError:
        return _("This is a bug in LoRA Lab; please report it with the command you ran.")
    return _(
        "This is a bug in LoRA Lab; please report it with the command you ran and the details in {path}.", path=path
    )
