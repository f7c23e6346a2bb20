"""One training path for full fine-tuning and LoRA. Run as `python -m core.training.train RUN_ID` in a child process.

The two methods differ only in `core.training.methods.wrap_model`: LoRA wraps the model with peft so that the adapters
and the classification head train; everything after that (data, Trainer, callback, evaluation, saving) is shared.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import time
import traceback
from functools import partial

import numpy as np
import psutil
import torch
from sqlalchemy import delete, update
from transformers import DataCollatorWithPadding, TrainingArguments, set_seed

from core import i18n
from core.data.datasets import load_split
from core.data.splitting import nested_rows
from core.i18n import _, words_of
from core.store.db import Dataset, Metric, Prediction, Run, RunStatus, open_database, session_factory, utcnow
from core.store.settings import Settings, get_settings
from core.store.storage import run_dir
from core.training import evaluate, models
from core.training.artifacts import artifact_dir, checkpoints_dir, latest_checkpoint, save_artifact, trained_model
from core.training.config import TrainConfig
from core.training.device import device_name, peak_memory_mb, pick_device, precision
from core.training.failures import TrainingError, out_of_memory, plain_error, smaller_batch
from core.training.methods import count_params, wrap_model
from core.training.predict import RunNotReady, load_artifact
from core.training.pruning import StudyPruner
from core.training.recorder import RunRecorder
from core.training.trainer import EncodedTexts, LabTrainer, dev_metrics


def _set_run(sessions, run_id: int, **values) -> None:
    with sessions.begin() as s:
        s.execute(update(Run).where(Run.id == run_id).values(**values))


def _add_note(sessions, run_id: int, note: str) -> None:
    with sessions.begin() as s:
        run = s.get(Run, run_id)
        run.notes = [*(run.notes or []), note]


def train_run(
    settings: Settings, run_id: int, parent_pid: int | None = None, start_seconds: float | None = None
) -> RunStatus:
    """Train, save and score one run, writing everything to the database. Returns how it ended.

    A run whose training has finished records its saved model before the test set is scored: if scoring fails, is
    cancelled or killed, a resume goes straight to scoring. Its checkpoints are deleted only once it has completed.

    What the process spends outside training is recorded in `stage_seconds` (a study has many short runs: their
    fixed cost is what a study pays again and again); `start_seconds` is the process's start and imports."""
    stages = {} if start_seconds is None else {"start": round(start_seconds, 2)}
    sessions = session_factory(settings.db_url)
    with sessions() as s:
        run = s.get(Run, run_id)
        dataset = s.get(Dataset, run.dataset_id) if run.dataset_id else None
    _set_run(
        sessions,
        run_id,
        status=RunStatus.RUNNING.value,
        pid=os.getpid(),
        heartbeat_at=utcnow(),
        started_at=run.started_at or utcnow(),
        timing_step=None,  # this process times its own steps (RunRecorder)
        timing_at=None,
        error=None,
    )
    try:
        if dataset is None:
            raise TrainingError(_("The run's dataset was deleted before it could train. Choose another dataset."))
        test = load_split(settings, dataset, "test")
        if trained_model(settings, run) is None:
            stopped = _train(settings, sessions, run, dataset, parent_pid, stages)
        else:
            stopped = None
            _add_note(sessions, run_id, _("Resumed with test scoring: training had finished and its model was saved."))
        started = time.perf_counter()
        status, values = stopped or (RunStatus.COMPLETED, _score(settings, sessions, run_id, test))
        if not stopped:
            stages["score"] = round(time.perf_counter() - started, 2)
    except KeyboardInterrupt:  # Ctrl+C reaches every process of the terminal: a stop asked for, not a crash
        status, values = RunStatus.CANCELLED, {"error": None}
    except Exception as e:  # noqa: BLE001 - every failure is recorded on the run in plain words
        status, values = RunStatus.FAILED, {"error": plain_error(e, run, run_dir(settings, run))}
        traceback.print_exc()
    values["stage_seconds"] = stages
    _set_run(sessions, run_id, status=status.value, finished_at=utcnow(), heartbeat_at=utcnow(), **values)
    if status == RunStatus.COMPLETED:  # deleted only now that the record says the run needs them no more
        shutil.rmtree(checkpoints_dir(settings, run), ignore_errors=True)
    return status


def _pick_device(settings: Settings) -> str:
    try:
        return pick_device(settings.device)
    except ValueError as e:
        raise TrainingError(words_of(e)) from None


def _train(
    settings: Settings, sessions, run: Run, dataset: Dataset, parent_pid, stages: dict
) -> tuple[RunStatus, dict] | None:
    """Train the run (from its last checkpoint if it has one), save its model and record that, with what training
    measured. Returns None once that is recorded; how the run ended and what to record if it stopped before."""
    loading = time.perf_counter()
    config = TrainConfig.from_dict(run.config)
    classes = list(dataset.classes)
    splits = {s: load_split(settings, dataset, s) for s in ("train", "dev")}
    if config.train_rows is not None:  # a training-set-size study's point: the same rows for both methods
        splits["train"] = splits["train"].iloc[nested_rows(splits["train"]["label"].to_numpy(), config.train_rows)]
    tokenizer = models.load_tokenizer(run.model_source, settings)
    run.base_revision = models.revision(
        run.model_source, settings
    )  # which weights the base holds: LoRA's adapters fit only them
    _set_run(sessions, run.id, base_revision=run.base_revision)

    def encode(df, by_length: bool = False):
        encodings = dict(tokenizer(df["text"].tolist(), truncation=True, max_length=config.max_length))
        labels = df["label"].tolist()
        if by_length:  # evaluation batches of similar lengths pad less; the order does not change the metrics
            order = np.argsort([len(ids) for ids in encodings["input_ids"]], kind="stable")
            encodings = {k: [v[i] for i in order] for k, v in encodings.items()}
            labels = [labels[i] for i in order]
        return EncodedTexts(encodings, labels)

    train_set, dev_set = encode(splits["train"]), encode(splits["dev"], by_length=True)
    # Out of memory: a smaller batch, accumulating gradients over more steps (the same examples per update), going
    # on from the last checkpoint; at batch size 1 there is nothing left to split.
    batch, accumulation = config.batch_size, 1
    device = _pick_device(settings)
    fit = partial(
        _fit, settings, sessions, run, config, tokenizer, classes, train_set, dev_set, device, parent_pid=parent_pid
    )
    while True:
        try:
            model, trainer, recorder = fit(batch, accumulation)
            break
        except Exception as e:
            if not out_of_memory(e):
                raise
            if batch == 1:
                raise TrainingError(
                    _("Out of memory, even at batch size 1: try a shorter max length or a smaller model.")
                    if config.method == "lora"
                    else _("Out of memory, even at batch size 1: try LoRA, a shorter max length or a smaller model.")
                ) from e
            traceback.print_exc()
        batch, accumulation = smaller_batch(config.batch_size, accumulation)
        gc.collect()  # the failed attempt's model, optimizer and activations
        if device == "cuda":
            torch.cuda.empty_cache()
        _add_note(
            sessions,
            run.id,
            _(
                "Out of memory: went on at batch size {batch}, accumulating gradients over {steps} steps ({examples} "
                "examples per update).",
                batch=batch,
                steps=accumulation,
                examples=batch * accumulation,
            ),
        )
    stages["load"] = round(recorder.started - loading, 2)  # until training began (RunRecorder.on_train_begin)
    if recorder.orphaned:
        return RunStatus.CRASHED, {
            "error": _("The worker that supervised this run stopped, so the run was abandoned.")
        }
    if recorder.cancelled:
        return RunStatus.CANCELLED, {"error": None}
    train_seconds, machine = recorder.train_seconds(), recorder.machine_load()
    if recorder.last_eval_step != trainer.state.global_step:
        trainer.evaluate()  # the final weights are a candidate for "best" too
    trainable, total = count_params(model)
    recorder.restore_best(model)
    model.eval()

    saving = time.perf_counter()
    folder = artifact_dir(settings, run)
    artifact_bytes, tokenizer_bytes = save_artifact(model, tokenizer, run, config, classes, folder)
    stages["save"] = round(time.perf_counter() - saving, 2)
    seen = trainer.state.global_step and len(train_set) * config.epochs
    # Training has finished: recorded with its model before the test set is scored, so that a failure, cancel or
    # kill while scoring leaves a run that resumes with scoring alone.
    _set_run(
        sessions,
        run.id,
        step=trainer.state.global_step,
        train_seconds=train_seconds,
        samples_per_second=seen / train_seconds if train_seconds else None,
        trainable_params=trainable,
        total_params=total,
        peak_memory_mb=peak_memory_mb(device),
        device=device_name(device),
        artifact_path=str(folder.relative_to(settings.data_dir)),
        artifact_bytes=artifact_bytes,
        tokenizer_bytes=tokenizer_bytes,
        **machine,
    )
    return None


def _hold_before_scoring() -> None:
    """A hook for the fault tests (tests/reliability/test_scoring_faults.py): while the file that
    LORALAB_TEST_HOLD_SCORING names exists, wait here, with training finished and the test set not yet scored."""
    hold = os.environ.get("LORALAB_TEST_HOLD_SCORING")
    while hold and os.path.exists(hold):
        time.sleep(0.1)


def _score(settings: Settings, sessions, run_id: int, test) -> dict:
    """Score the test set with the model the run saved, loaded as Predict loads it (the one path, whether the run
    has just trained or resumes with scoring alone), and store its predictions. Returns what completes the record."""
    gc.collect()  # the training's model, optimizer and Trainer, before the saved model loads
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    _hold_before_scoring()
    with sessions() as s:
        run = s.get(Run, run_id)
    folder = trained_model(settings, run)
    if folder is None:
        raise TrainingError(
            _(
                "Run {run}'s saved model is missing from {folder}. Launch it again.",
                run=run_id,
                folder=run_dir(settings, run),
            )
        )
    device = _pick_device(settings)
    try:
        predictor = load_artifact(folder, settings)
        evaluate.ready_to_score(predictor.model.to(device))
        score_started = time.perf_counter()
        probs = predictor.predict_proba(test["text"].tolist())
    except RunNotReady as e:
        raise TrainingError(words_of(e)) from None
    except Exception as e:
        if not out_of_memory(e):
            raise
        raise TrainingError(
            _(
                "Out of memory while scoring the test set. Training has finished and its model is saved: resume the "
                "run when more memory is free (fewer runs training beside it) to score the test set alone."
            )
        ) from e
    score_seconds = time.perf_counter() - score_started
    metrics = evaluate.test_metrics(test["label"].to_numpy(), probs, predictor.classes)
    preds = probs.argmax(axis=1)
    with sessions.begin() as s:
        s.execute(delete(Prediction).where(Prediction.run_id == run_id))
        s.add_all(
            Prediction(
                run_id=run_id,
                idx=i,
                text=t,
                true_label=int(y),
                pred_label=int(p),
                probs=[round(float(x), 6) for x in pr],
            )
            for i, (t, y, p, pr) in enumerate(zip(test["text"], test["label"], preds, probs))
        )
    return {
        "test_metrics": metrics,
        "score_seconds": score_seconds,
        # The most memory of training and of scoring, whichever process did each.
        "peak_memory_mb": max(run.peak_memory_mb or 0.0, peak_memory_mb(device)),
        "error": None,
    }


def _fit(
    settings, sessions, run, config, tokenizer, classes, train_set, dev_set, device, batch, accumulation, parent_pid
):
    """Train from the run's last checkpoint if it has one, else from the start. Returns model, trainer, recorder. A
    rate a learning-rate study tries (role "grid") may be stopped early by the study's pruner."""
    set_seed(config.seed)
    base, new_modules = models.load_base(run.model_source, classes, settings)
    model = wrap_model(base, config, new_modules)
    output_dir = checkpoints_dir(settings, run)
    checkpoint = latest_checkpoint(output_dir, run.uid)  # only a checkpoint this run wrote
    recorder = RunRecorder(sessions, run.id, parent_pid, settings.checkpoint_every_s, run.uid)
    with sessions.begin() as s:  # what was logged after the checkpoint is logged again as training redoes it
        s.execute(delete(Metric).where(Metric.run_id == run.id, Metric.step > (checkpoint[1] if checkpoint else 0)))
    if checkpoint:
        recorder.resume_from(checkpoint[0])
        _add_note(sessions, run.id, _("Resumed from the checkpoint at step {step}.", step=checkpoint[1]))
    steps_per_epoch = max(1, -(-len(train_set) // config.batch_size))
    mixed = precision(device, evaluate.cpu_has_bf16())
    args = TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=config.epochs,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation,
        per_device_eval_batch_size=batch * 2,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=int(config.warmup_ratio * steps_per_epoch * config.epochs),
        eval_strategy="steps",
        eval_steps=max(1, steps_per_epoch // config.evals_per_epoch),
        logging_steps=max(1, min(10, steps_per_epoch // 5)),
        save_strategy="no",  # checkpoints are timed by RunRecorder; the best weights are kept in memory
        seed=config.seed,
        use_cpu=device == "cpu",  # otherwise the Trainer takes the GPU there is: CUDA's, else Apple silicon's
        bf16=mixed == "bf16",  # autocast
        fp16=mixed == "fp16",
        report_to="none",
        disable_tqdm=True,
    )
    trainer = LabTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=dev_set,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=dev_metrics,
        # The pruner after the recorder: it reads the dev accuracy the recorder has written
        callbacks=[recorder, *([StudyPruner(sessions, run.id)] if run.study_role == "grid" else [])],
    )
    # LoRA's frozen weights never change: cast them to bf16 once rather than at every step (autocast would).
    full_precision = evaluate.cast_linears(model, torch.bfloat16, frozen_only=True) if mixed == "bf16" else {}
    trainer.train(resume_from_checkpoint=str(checkpoint[0]) if checkpoint else None)
    evaluate.restore_linears(model, full_precision)
    return model, trainer, recorder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train one queued run (started by the worker).")
    parser.add_argument("run_id", type=int, nargs="?")
    parser.add_argument("--db", help="database URL")
    parser.add_argument("--parent-pid", type=int, help="stop if this process (the supervisor) goes away")
    parser.add_argument(
        "--standby", action="store_true", help="import, then wait for 'RUN_ID LOG_PATH' on stdin (core.jobs.runners)"
    )
    args = parser.parse_args(argv)
    i18n.set_language(i18n.from_environment())  # what it writes on a run (notes, failures): the server's language
    settings = get_settings(args.db)
    open_database(settings.db_url)
    if args.standby:
        given = sys.stdin.readline().split(maxsplit=1)
        if not given:  # the worker has gone, or needs it no more
            return 0
        waited = time.perf_counter()
        args.run_id = int(given[0])
        log = os.open(given[1].strip(), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)  # the run's train.log, as a process started for it writes
        os.dup2(log, 2)
        os.close(log)
        start_seconds = time.perf_counter() - waited  # its start and imports were paid before the run was given
    else:
        start_seconds = time.time() - psutil.Process().create_time()  # process start and imports, until here
    if args.run_id is None:
        parser.error("give a RUN_ID (or --standby)")
    status = train_run(settings, args.run_id, args.parent_pid, start_seconds)
    return 0 if status in (RunStatus.COMPLETED, RunStatus.CANCELLED) else 1


if __name__ == "__main__":
    sys.exit(main())
