"""One training path for full fine-tuning and LoRA. Run as `python -m core.train RUN_ID` in a child process.

The two methods differ only in `wrap_model`: LoRA wraps the model with peft so that the adapters and the
classification head train; everything after that (data, Trainer, callback, evaluation, saving) is shared.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import resource
import shutil
import sys
import time
import traceback
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from sklearn.metrics import accuracy_score, f1_score
from sqlalchemy import delete, update
from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.trainer_pt_utils import LengthGroupedSampler

from core import evaluate, models
from core.data import DataError, load_split
from core.db import Dataset, Metric, Prediction, Run, RunStatus, session_factory, utcnow
from core.settings import Settings, get_settings


@dataclass
class TrainConfig:
    method: str = "lora"  # "full" trains every weight; "lora" trains low-rank adapters and the head
    epochs: float = 3.0  # passes over the training set
    batch_size: int = 32  # the seed article's batch size
    learning_rate: float | None = None  # None: 5e-5 for full, 1e-3 for LoRA (adapters start at zero and need more)
    weight_decay: float = 0.001  # as in the seed article
    warmup_ratio: float = 0.1  # share of steps spent ramping the learning rate up from zero
    max_length: int = 64  # tokens per text; longer texts are cut (the seed's news titles fit)
    evals_per_epoch: int = 2  # dev-set evaluations per epoch; the weights with the lowest dev loss are kept
    seed: int = 42  # same seed, same data order and head initialisation: a fair full-vs-LoRA pair
    lora_r: int = 8  # adapter rank (seed article)
    lora_alpha: int = 32  # adapter scale numerator: updates are scaled by alpha / r (seed article)
    lora_dropout: float = 0.1  # dropout on the adapter input (seed article)
    lora_targets: str = "query,key,value"  # attention projections that get adapters (BERT names)

    def __post_init__(self):
        if self.learning_rate is None:
            self.learning_rate = 5e-5 if self.method == "full" else 1e-3

    def problems(self) -> list[str]:
        """Invalid values, in plain words; empty when the config can be trained."""
        out = []
        if self.method not in ("full", "lora"):
            out.append(f"Method must be 'full' or 'lora', not '{self.method}'.")
        if not 0 < self.epochs <= 100:
            out.append("Epochs must be more than 0 and at most 100.")
        if not 1 <= self.batch_size <= 4096:
            out.append("Batch size must be between 1 and 4096.")
        if not 0 < self.learning_rate < 1:
            out.append("Learning rate must be more than 0 and less than 1 (try 5e-5 for full, 5e-4 for LoRA).")
        if not 0 <= self.weight_decay < 1:
            out.append("Weight decay must be at least 0 and less than 1.")
        if not 0 <= self.warmup_ratio < 1:
            out.append("Warmup share must be at least 0 and less than 1.")
        if not 8 <= self.max_length <= 512:
            out.append("Max length must be between 8 and 512 tokens.")
        if not 1 <= self.evals_per_epoch <= 100:
            out.append("Evaluations per epoch must be between 1 and 100.")
        if self.method == "lora":
            if not 1 <= self.lora_r <= 1024:
                out.append("LoRA rank r must be between 1 and 1024.")
            if self.lora_alpha <= 0:
                out.append("LoRA alpha must be more than 0.")
            if not 0 <= self.lora_dropout < 1:
                out.append("LoRA dropout must be at least 0 and less than 1.")
            if not self.target_modules:
                out.append("Name at least one LoRA target module (for BERT: query,key,value).")
        return out

    @property
    def target_modules(self) -> list[str]:
        return [t.strip() for t in self.lora_targets.split(",") if t.strip()]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# The dashboard's presets, as data so the numbers can be tuned here. "config" holds TrainConfig fields shared by
# both methods; "learning_rates" holds each method's own rate (None: TrainConfig's default for that method).
PRESETS: dict[str, dict] = {
    "quick demo": {
        "about": "One pass over the data: a first result in minutes, to see that everything works.",
        "config": {"epochs": 1},
        "learning_rates": {"full": None, "lora": None},
    },
    "seed article": {
        "about": "The settings of the article this project started from: 5 epochs, batch 32, LoRA r=8, alpha=32.",
        "config": {
            "epochs": 5,
            "batch_size": 32,
            "max_length": 64,
            "weight_decay": 0.001,
            "lora_r": 8,
            "lora_alpha": 32,
            "lora_dropout": 0.1,
            "lora_targets": "query,key,value",
        },
        "learning_rates": {"full": None, "lora": None},
    },
}


METHOD_NAMES = {"full": "Full fine-tuning", "lora": "LoRA"}


def problems_of(configs: list[TrainConfig]) -> list[str]:
    """The problems of several configs as one list: those they share once, the others named by method."""
    lists = [c.problems() for c in configs]
    shared = set.intersection(*map(set, lists)) if len(lists) > 1 else set()
    out = [p for p in lists[0] if p in shared] if shared else []
    for config, problems in zip(configs, lists):
        prefix = f"{METHOD_NAMES.get(config.method, config.method)}: " if len(lists) > 1 else ""
        out += [prefix + p for p in problems if p not in shared]
    return out


def preset_config(name: str, method: str) -> TrainConfig:
    """A preset filled in for one method."""
    preset = PRESETS[name]
    return TrainConfig(**{**preset["config"], "method": method, "learning_rate": preset["learning_rates"].get(method)})


def wrap_model(model, config: TrainConfig):
    """The only place where the methods differ."""
    if config.method == "full":
        return model
    from peft import LoraConfig, TaskType, get_peft_model

    lora = LoraConfig(
        task_type=TaskType.SEQ_CLS,  # marks the classification head as trainable and saved (modules_to_save)
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
    )
    try:
        return get_peft_model(model, lora)
    except ValueError as e:
        raise TrainingError(
            f"LoRA could not be applied: {e}. This model's attention layers may have other names; "
            "set the target modules to match them."
        ) from None


class TrainingError(Exception):
    """A run that cannot go on, in plain words."""


class Cancelled(Exception):
    pass


class EncodedTexts(torch.utils.data.Dataset):
    """Texts tokenized once, unpadded: the collator pads each batch to its own longest text."""

    def __init__(self, encodings: dict, labels):
        self.encodings, self.labels = encodings, list(labels)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        item = {k: v[i] for k, v in self.encodings.items()}
        item["labels"] = self.labels[i]
        return item


class FastDropout(torch.nn.Dropout):
    """nn.Dropout with a cheaper mask: 16 random bits per element, four from each 64-bit draw, where nn.Dropout
    draws a double per element. On a CPU the random draws are most of dropout's cost, and LoRA adds one dropout per
    adapted layer (18 in a 6-layer BERT) to the model's own: the masks were a quarter of a LoRA step (bench/).
    An element is dropped with probability p to within 1/65536; the random stream is torch's seeded generator."""

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        n = x.numel()
        bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None)
        keep = bits.view(torch.int16)[:n].view(x.shape) >= round(self.p * 65536) - 32768
        return x * (keep.to(x.dtype) * (1 / (1 - self.p)))


def use_fast_dropout(model) -> None:
    """Every plain nn.Dropout of the model (the model's own and LoRA's) becomes a FastDropout, in place: same
    module, same p, nothing saved differs."""
    for module in model.modules():
        if type(module) is torch.nn.Dropout and not module.inplace:
            module.__class__ = FastDropout


def dev_metrics(eval_pred) -> dict:
    preds = np.argmax(eval_pred.predictions, axis=-1)
    return {
        "accuracy": accuracy_score(eval_pred.label_ids, preds),
        "f1_macro": f1_score(eval_pred.label_ids, preds, average="macro", zero_division=0),
    }


class EpochSeededSampler(LengthGroupedSampler):
    """Batches of similar lengths (less padding), in an order set by the seed and the epoch alone: the Trainer calls
    set_epoch at each epoch's start, so a run resumed mid-epoch meets the batches an unbroken run would have met."""

    def __init__(self, batch_size: int, dataset, seed: int):
        super().__init__(batch_size, dataset=dataset, model_input_name="input_ids")
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator = torch.Generator().manual_seed(self.seed + int(epoch))


class LabTrainer(Trainer):
    def _get_train_sampler(self, train_dataset=None):
        batch = self.args.train_batch_size * self.args.gradient_accumulation_steps  # per update, as in the Trainer
        return EpochSeededSampler(batch, train_dataset or self.train_dataset, self.args.seed)


CHECKPOINT_STATE = "lora_lab_state.json"  # written last into a checkpoint folder: without it, the folder is partial


def latest_checkpoint(folder: Path) -> tuple[Path, int] | None:
    """The newest complete checkpoint in a run's trainer folder, and its step; None if there is none."""
    found = [
        (int(path.name.removeprefix("checkpoint-")), path)
        for path in folder.glob("checkpoint-*")
        if path.name.removeprefix("checkpoint-").isdigit() and (path / CHECKPOINT_STATE).is_file()
    ]
    if not found:
        return None
    step, path = max(found)
    return path, step


class RunRecorder(TrainerCallback):
    """Writes losses and evaluations to the database, keeps the heartbeat, obeys the cancel flag, keeps the best
    weights (lowest dev loss) in memory (a copy of the trainable weights), and asks for a checkpoint every
    `checkpoint_every_s` seconds, so that a crashed run can resume. A checkpoint also holds the best weights so far
    and the training time; only the newest checkpoint is kept."""

    LOGGED = {"loss": "train_loss", "learning_rate": "learning_rate", "grad_norm": "grad_norm"}

    def __init__(self, sessions, run_id: int, parent_pid: int | None, checkpoint_every_s: float):
        self.sessions, self.run_id, self.parent_pid = sessions, run_id, parent_pid
        self.checkpoint_every_s = checkpoint_every_s
        self.last_beat = self.last_save = 0.0
        self.cancelled = self.orphaned = False
        self.best_loss = math.inf
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_step = self.last_eval_step = None
        self.seconds_before = 0.0  # training time of earlier processes, for a resumed run
        self.started = time.perf_counter()

    def resume_from(self, checkpoint: Path) -> None:
        saved = json.loads((checkpoint / CHECKPOINT_STATE).read_text(encoding="utf-8"))
        self.best_loss, self.best_step = saved.get("best_loss", math.inf), saved["best_step"]
        self.seconds_before = saved["train_seconds"]
        if (checkpoint / "best.safetensors").is_file():
            self.best_state = load_file(checkpoint / "best.safetensors")

    def train_seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = self.last_save = time.perf_counter()
        with self.sessions.begin() as s:
            s.execute(
                update(Run).where(Run.id == self.run_id).values(total_steps=state.max_steps, step=state.global_step)
            )

    def on_step_end(self, args, state, control, **kwargs):
        due = time.perf_counter() - self.last_save >= self.checkpoint_every_s
        if due and state.global_step % args.logging_steps == 0:
            # Saved at a step that logs (after its logging and evaluation): a resumed run's first logged loss then
            # averages the same steps as an unbroken run's.
            control.should_save = True
        now = time.monotonic()
        if now - self.last_beat < 1.0:
            return
        self.last_beat = now
        with self.sessions.begin() as s:
            s.execute(update(Run).where(Run.id == self.run_id).values(step=state.global_step, heartbeat_at=utcnow()))
            self.cancelled = bool(s.get(Run, self.run_id).cancel_requested)
        self.orphaned = self.parent_pid is not None and os.getppid() != self.parent_pid
        if self.cancelled or self.orphaned:
            control.should_training_stop = True

    def on_save(self, args, state, control, **kwargs):
        """The Trainer has written model, optimizer, scheduler and random states: add ours, then mark it complete."""
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self.best_state is not None:
            save_file(
                {n: t.detach().cpu().contiguous() for n, t in self.best_state.items()}, folder / "best.safetensors"
            )
        saved = {
            "best_loss": self.best_loss,
            "best_step": self.best_step,
            "train_seconds": self.train_seconds(),
        }
        (folder / CHECKPOINT_STATE).write_text(json.dumps(saved), encoding="utf-8")
        for old in Path(args.output_dir).glob("checkpoint-*"):
            if old != folder:
                shutil.rmtree(old, ignore_errors=True)
        self.last_save = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        rows = []
        for key, value in (logs or {}).items():
            timing = key.endswith(("_runtime", "_per_second"))  # the Trainer's clock, not something learned
            name = self.LOGGED.get(key, key if key.startswith("eval_") and not timing else None)
            if name and isinstance(value, int | float) and np.isfinite(value):
                rows.append(
                    Metric(
                        run_id=self.run_id,
                        step=state.global_step,
                        epoch=state.epoch or 0.0,
                        name=name,
                        value=float(value),
                    )
                )
        if rows:
            with self.sessions.begin() as s:
                s.add_all(rows)

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        self.last_eval_step = state.global_step
        # The lowest dev loss, as the seed article's load_best_model_at_end: on the demo set's four seeds it kept
        # weights that scored 0.6 (full) and 0.2 (LoRA) points better on the test set than the highest dev accuracy,
        # which moves in steps of one example and ties often (bench/, README "Benchmark").
        loss = (metrics or {}).get("eval_loss", math.inf)
        if loss < self.best_loss:
            self.best_loss, self.best_step = loss, state.global_step
            self.best_state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    def restore_best(self, model) -> None:
        if self.best_state is not None:
            params = dict(model.named_parameters())
            with torch.no_grad():
                for name, value in self.best_state.items():
                    params[name].copy_(value)


def count_params(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def param_counts(model_source: str, classes: list[str], config: TrainConfig) -> dict[str, tuple[int, int]]:
    """(trainable, total) parameters for each method with this model, classes and LoRA settings, before training.

    Loads the model once (seconds); callers cache the answer.
    """
    model = models.load_classifier(model_source, classes)
    counts = {"full": count_params(model)}
    counts["lora"] = count_params(wrap_model(model, TrainConfig.from_dict({**config.to_dict(), "method": "lora"})))
    return counts


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU: {cpu} ({torch.get_num_threads()} threads)"


def peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def artifact_dir(settings: Settings, run_id: int) -> Path:
    return settings.runs_dir / str(run_id) / "model"


def save_artifact(model, tokenizer, run: Run, config: TrainConfig, classes: list[str], folder: Path) -> int:
    """Weights as safetensors (for LoRA: adapters plus the classification head), tokenizer, and what a reload
    needs. Written to a temporary folder first, so a half-written artifact never stands in place."""
    tmp = folder.with_name(folder.name + ".partial")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        meta = {
            "method": config.method,
            "model_source": run.model_source,
            "classes": classes,
            "max_length": config.max_length,
        }
        (tmp / "lora_lab.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a write that failed (disk full, say) leaves nothing behind
        raise
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _set_run(sessions, run_id: int, **values) -> None:
    with sessions.begin() as s:
        s.execute(update(Run).where(Run.id == run_id).values(**values))


def _add_note(sessions, run_id: int, note: str) -> None:
    with sessions.begin() as s:
        run = s.get(Run, run_id)
        run.notes = [*(run.notes or []), note]


def train_run(settings: Settings, run_id: int, parent_pid: int | None = None) -> RunStatus:
    """Train, score and save one run, writing everything to the database. Returns how it ended."""
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
        error=None,
    )
    try:
        if dataset is None:
            raise TrainingError("The run's dataset was deleted before it could train. Choose another dataset.")
        status, values = _train(settings, sessions, run, dataset, parent_pid)
    except Exception as e:  # noqa: BLE001 - every failure is recorded on the run in plain words
        status, values = RunStatus.FAILED, {"error": plain_error(e, run, settings.runs_dir / str(run_id))}
        traceback.print_exc()
    _set_run(sessions, run_id, status=status.value, finished_at=utcnow(), heartbeat_at=utcnow(), **values)
    return status


def out_of_memory(e: BaseException) -> bool:
    """A GPU out of memory (torch.OutOfMemoryError), or a CPU allocation that failed."""
    text = str(e).lower()
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


WRITE_FAILURES = ("no space left", "file too large", "disk quota", "read-only file system", "permission denied")


def plain_error(e: Exception, run: Run, folder: Path) -> str:
    """What went wrong, for the run's page; `folder` is where the run writes (checkpoints, model)."""
    if isinstance(e, TrainingError | models.ModelSourceError | DataError):
        return str(e)
    if out_of_memory(e):
        batch = max(1, int(run.config.get("batch_size", 32)) // 2)
        hint = "" if run.method == "lora" else " or LoRA"
        return f"Out of memory: try batch size {batch}{hint}."
    if isinstance(e, OSError) and e.filename or any(failure in str(e).lower() for failure in WRITE_FAILURES):
        return (  # safetensors reports a failed write in its own error type, without the file's name
            f"Could not save to {getattr(e, 'filename', None) or folder}: {getattr(e, 'strerror', None) or e}. "
            "Free some disk space or make that folder writable, then resume the run or launch it again."
        )
    return f"Training stopped with an unexpected error ({type(e).__name__}: {e}). The full report is in the run's log."


def smaller_batch(examples: int, accumulation: int) -> tuple[int, int]:
    """The next way to make updates of `examples` from smaller batches: (batch, accumulation steps) with
    batch x accumulation == examples exactly, so the run's batches and updates stay as configured (16: 8 x 2,
    then 4 x 4; 12: 6 x 2, then 4 x 3; a prime 7: 1 x 7)."""
    steps = next(d for d in range(accumulation + 1, examples + 1) if examples % d == 0)
    return examples // steps, steps


def checkpoints_dir(settings: Settings, run_id: int) -> Path:
    return settings.runs_dir / str(run_id) / "trainer"


def _train(settings: Settings, sessions, run: Run, dataset: Dataset, parent_pid) -> tuple[RunStatus, dict]:
    config = TrainConfig.from_dict(run.config)
    classes = list(dataset.classes)
    splits = {s: load_split(settings, dataset, s) for s in ("train", "dev", "test")}
    tokenizer = models.load_tokenizer(run.model_source)

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
    fit = partial(_fit, settings, sessions, run, config, tokenizer, classes, train_set, dev_set, parent_pid=parent_pid)
    while True:
        try:
            model, trainer, recorder = fit(batch, accumulation)
            break
        except Exception as e:
            if not out_of_memory(e):
                raise
            if batch == 1:
                other = "" if config.method == "lora" else "LoRA, "
                raise TrainingError(
                    f"Out of memory, even at batch size 1: try {other}a shorter max length or a smaller model."
                ) from e
            traceback.print_exc()
        batch, accumulation = smaller_batch(config.batch_size, accumulation)
        gc.collect()  # the failed attempt's model, optimizer and activations
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        _add_note(
            sessions,
            run.id,
            f"Out of memory: went on at batch size {batch}, accumulating gradients over {accumulation} steps "
            f"({batch * accumulation} examples per update).",
        )
    if recorder.orphaned:
        return RunStatus.CRASHED, {"error": "The worker that supervised this run stopped, so the run was abandoned."}
    if recorder.cancelled:
        return RunStatus.CANCELLED, {"error": None}
    train_seconds = recorder.train_seconds()
    if recorder.last_eval_step != trainer.state.global_step:
        trainer.evaluate()  # the final weights are a candidate for "best" too
    trainable, total = count_params(model)
    recorder.restore_best(model)
    model.eval()

    folder = artifact_dir(settings, run.id)
    artifact_bytes = save_artifact(model, tokenizer, run, config, classes, folder)
    shutil.rmtree(checkpoints_dir(settings, run.id), ignore_errors=True)  # the artifact holds what is worth keeping
    scorer = evaluate.merged(model)
    test = splits["test"]
    probs = evaluate.predict_proba(scorer, tokenizer, test["text"].tolist(), config.max_length)
    metrics = evaluate.test_metrics(test["label"].to_numpy(), probs, classes)
    preds = probs.argmax(axis=1)
    with sessions.begin() as s:
        s.execute(delete(Prediction).where(Prediction.run_id == run.id))
        s.add_all(
            Prediction(
                run_id=run.id,
                idx=i,
                text=t,
                true_label=int(y),
                pred_label=int(p),
                probs=[round(float(x), 6) for x in pr],
            )
            for i, (t, y, p, pr) in enumerate(zip(test["text"], test["label"], preds, probs))
        )
    seen = trainer.state.global_step and len(train_set) * config.epochs
    return RunStatus.COMPLETED, {
        "step": trainer.state.global_step,
        "train_seconds": train_seconds,
        "samples_per_second": seen / train_seconds if train_seconds else None,
        "trainable_params": trainable,
        "total_params": total,
        "peak_memory_mb": peak_memory_mb(),
        "device": device_name(),
        "artifact_path": str(folder.relative_to(settings.data_dir)),
        "artifact_bytes": artifact_bytes,
        "test_metrics": metrics,
        "error": None,
    }


def _fit(settings, sessions, run, config, tokenizer, classes, train_set, dev_set, batch, accumulation, parent_pid):
    """Train from the run's last checkpoint if it has one, else from the start. Returns model, trainer, recorder."""
    set_seed(config.seed)
    model = wrap_model(models.load_classifier(run.model_source, classes), config)
    output_dir = checkpoints_dir(settings, run.id)
    checkpoint = latest_checkpoint(output_dir)
    recorder = RunRecorder(sessions, run.id, parent_pid, settings.checkpoint_every_s)
    with sessions.begin() as s:  # what was logged after the checkpoint is logged again as training redoes it
        s.execute(delete(Metric).where(Metric.run_id == run.id, Metric.step > (checkpoint[1] if checkpoint else 0)))
    if checkpoint:
        recorder.resume_from(checkpoint[0])
        _add_note(sessions, run.id, f"Resumed from the checkpoint at step {checkpoint[1]}.")
    steps_per_epoch = max(1, -(-len(train_set) // config.batch_size))
    on_gpu = torch.cuda.is_available()
    bf16 = evaluate.bf16_supported(torch.device("cuda" if on_gpu else "cpu"))
    if not on_gpu:
        use_fast_dropout(model)  # on a GPU, dropout's mask is already cheap (a fused kernel)
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
        use_cpu=not on_gpu,
        bf16=bf16,  # autocast: on a GPU, and on CPUs with bf16 units (AMX / AVX-512 BF16)
        fp16=on_gpu and not bf16,
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
        callbacks=[recorder],
    )
    # LoRA's frozen weights never change: cast them to bf16 once rather than at every step (autocast would).
    full_precision = evaluate.cast_linears(model, torch.bfloat16, frozen_only=True) if bf16 else {}
    trainer.train(resume_from_checkpoint=str(checkpoint[0]) if checkpoint else None)
    evaluate.restore_linears(model, full_precision)
    return model, trainer, recorder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train one queued run (started by the worker).")
    parser.add_argument("run_id", type=int)
    parser.add_argument("--db", help="database URL")
    parser.add_argument("--parent-pid", type=int, help="stop if this process (the supervisor) goes away")
    args = parser.parse_args(argv)
    status = train_run(get_settings(args.db), args.run_id, args.parent_pid)
    return 0 if status in (RunStatus.COMPLETED, RunStatus.CANCELLED) else 1


if __name__ == "__main__":
    sys.exit(main())
