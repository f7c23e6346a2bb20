"""Training both methods through the real worker and child processes, on a tiny BERT built in a temporary folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from sqlalchemy import select, text

from core.jobs.runs import ConfigError, create_comparison, create_run, request_cancel
from core.jobs.worker import claim_next_run, reconcile_stale_runs, run_worker
from core.store.db import Metric, Prediction, Run, RunStatus, get_engine, session_factory, utcnow
from core.store.settings import get_settings
from core.training import models
from core.training.config import TrainConfig
from core.training.recorder import RunRecorder
from tests.helpers import ROOT, get_run, metric_count, start_worker, store, wait_for

FAST = {"epochs": 20, "batch_size": 16, "evals_per_epoch": 1, "max_length": 32}


def test_sqlite_is_in_wal_mode(settings):
    with get_engine(settings.db_url).connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000


def test_pair_trains_through_the_worker_and_reloads_in_a_fresh_process(settings, csv_folder, tiny_model):
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        _, (full, lora) = create_comparison(
            s, dataset, tiny_model, TrainConfig(method="full", learning_rate=3e-3, **FAST)
        )
    assert full.pair_id == lora.pair_id and lora.config["learning_rate"] == 1e-3  # LoRA keeps its own default

    assert run_worker(settings, poll_s=0.1, exit_when_idle=True) == 0

    for run_id in (full.id, lora.id):
        run = get_run(settings, run_id)
        assert run.status == "completed", run.error
        t = run.test_metrics
        assert set(t) >= {
            "accuracy",
            "precision_weighted",
            "recall_weighted",
            "f1_macro",
            "confusion_matrix",
            "report",
        }
        assert np.array(t["confusion_matrix"]).sum() == 24
        assert run.train_seconds > 0 and run.samples_per_second > 0 and run.peak_memory_mb > 0
        assert run.device.startswith("CPU") and run.artifact_bytes > 0
        assert metric_count(settings, run_id) > 0
        with session_factory(settings.db_url, read_only=True)() as s:
            names = set(s.scalars(select(Metric.name).where(Metric.run_id == run_id).distinct()))
        assert {"train_loss", "learning_rate", "eval_loss", "eval_accuracy", "eval_f1_macro"} <= names
    full, lora = get_run(settings, full.id), get_run(settings, lora.id)
    assert full.test_metrics["accuracy"] > 0.6  # chance is 1/3
    assert lora.trainable_params < full.trainable_params / 2  # adapters and head only
    assert lora.total_params > full.total_params  # the adapters are extra weights
    assert lora.artifact_bytes < full.artifact_bytes
    # The head is saved with the LoRA adapters (modules_to_save).
    adapter = settings.data_dir / lora.artifact_path
    from safetensors import safe_open

    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as f:
        assert any("classifier" in k for k in f.keys()) and any("lora_A" in k for k in f.keys())

    # A fresh process loads each run and reproduces its stored test predictions.
    script = (
        "import json,sys\n"
        "from core.store.settings import get_settings\nfrom core.store.db import Run, session_factory\n"
        "from core.training.predict import load_run\nimport pandas as pd\n"
        "st = get_settings(sys.argv[1])\n"
        "with session_factory(st.db_url)() as s:\n"
        "    run = s.get(Run, int(sys.argv[2])); ds = run.dataset\n"
        "    texts = pd.read_csv(st.data_dir / ds.path / 'test.csv', keep_default_na=False)['text'].tolist()\n"
        "    print(json.dumps(load_run(st, run).predict_proba(texts).tolist()))\n"
    )
    for run in (full, lora):
        out = subprocess.run(
            [sys.executable, "-c", script, settings.db_url, str(run.id)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "LORALAB_DATA_DIR": str(settings.data_dir)},
        )
        reloaded = np.array(json.loads(out.stdout.strip().splitlines()[-1]))
        with session_factory(settings.db_url)() as s:
            stored = s.scalars(select(Prediction).where(Prediction.run_id == run.id).order_by(Prediction.idx)).all()
        assert len(stored) == 24
        assert reloaded.argmax(axis=1).tolist() == [p.pred_label for p in stored]
        np.testing.assert_allclose(reloaded, np.array([p.probs for p in stored]), atol=1e-4)


def test_cancel_stops_a_running_run_within_seconds(settings, csv_folder, tiny_model):
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        run = create_run(s, dataset, tiny_model, TrainConfig(method="full", **{**FAST, "epochs": 100}))
    worker = start_worker(settings)
    try:
        wait_for(lambda: get_run(settings, run.id).step > 0)
        with session_factory(settings.db_url)() as s:
            request_cancel(s, run.id)
        asked = time.monotonic()
        wait_for(lambda: get_run(settings, run.id).status == "cancelled", timeout=20)
        assert time.monotonic() - asked < 10
        assert metric_count(settings, run.id) > 0  # what was logged stays
        assert worker.poll() is None  # the worker lives on
    finally:
        worker.kill()
        worker.wait()


def test_sigkill_of_the_child_ends_crashed_keeps_metrics_and_the_queue_goes_on(settings, csv_folder, tiny_model):
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        doomed = create_run(
            s, dataset, tiny_model, TrainConfig(method="lora", **{**FAST, "epochs": 100, "batch_size": 8})
        )
        following = create_run(s, dataset, tiny_model, TrainConfig(method="full", **{**FAST, "epochs": 2}))
    worker = start_worker(settings)
    try:
        wait_for(lambda: metric_count(settings, doomed.id) > 0)
        os.kill(get_run(settings, doomed.id).pid, signal.SIGKILL)
        wait_for(lambda: get_run(settings, doomed.id).status == "crashed", timeout=20)
        crashed = get_run(settings, doomed.id)
        assert "killed (SIGKILL)" in crashed.error and "Metrics logged so far are kept" in crashed.error
        assert metric_count(settings, doomed.id) > 0
        wait_for(lambda: get_run(settings, following.id).status == "completed", timeout=120)
    finally:
        worker.kill()
        worker.wait()
    with get_engine(settings.db_url).connect() as conn:
        assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"


def test_stale_running_runs_are_marked_crashed(settings, csv_folder, tiny_model):
    dataset = store(settings, csv_folder)
    from datetime import timedelta

    with session_factory(settings.db_url)() as s:
        run = create_run(s, dataset, tiny_model, TrainConfig(), status=RunStatus.RUNNING)
        fresh = create_run(s, dataset, tiny_model, TrainConfig(), status=RunStatus.RUNNING)
        s.get(Run, run.id).heartbeat_at = utcnow() - timedelta(minutes=5)
        s.commit()
    assert reconcile_stale_runs(settings) == [run.id]
    assert get_run(settings, run.id).status == "crashed"
    assert "heartbeat" in get_run(settings, run.id).error
    assert get_run(settings, fresh.id).status == "running"


def test_a_queued_run_is_claimed_once(settings, csv_folder, tiny_model):
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        first = create_run(s, dataset, tiny_model, TrainConfig())
        second = create_run(s, dataset, tiny_model, TrainConfig())
    assert claim_next_run(settings) == first.id
    assert claim_next_run(settings) == second.id
    assert claim_next_run(settings) is None


def test_cancelling_a_queued_run_is_immediate(settings, csv_folder, tiny_model):
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        run = create_run(s, dataset, tiny_model, TrainConfig())
        assert request_cancel(s, run.id).status == "cancelled"
    assert claim_next_run(settings) is None


@pytest.mark.parametrize(
    "values,expected",
    [
        ({"learning_rate": -1.0}, "Learning rate"),
        ({"method": "lora", "lora_r": 0}, "LoRA rank r"),
        ({"epochs": 0}, "Epochs"),
        ({"batch_size": 10**6}, "Batch size"),
        ({"method": "sgd"}, "Method must be"),
    ],
)
def test_invalid_hyperparameters_are_refused(settings, csv_folder, tiny_model, values, expected):
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s, pytest.raises(ConfigError) as err:
        create_run(s, dataset, tiny_model, TrainConfig(**values))
    assert expected in str(err.value)


def test_the_model_trains_with_torchs_own_dropout(settings, csv_folder, tiny_model, monkeypatch):
    """A cheaper CPU dropout mask (FastDropout) cost LoRA accuracy on 9 of 10 seeds over three data sets (README,
    Benchmark): the model the trainer trains holds torch's nn.Dropout wherever it drops out, at the probabilities
    configured, for both methods."""
    import torch

    from core.training import train

    seen = []  # each trained model's dropout modules: (type, p, name)

    class Spy(train.LabTrainer):
        def train(self, *args, **kwargs):
            seen.append(
                [(type(m), m.p, n) for n, m in self.model.named_modules() if "dropout" in type(m).__name__.lower()]
            )
            return super().train(*args, **kwargs)

    monkeypatch.setattr(train, "LabTrainer", Spy)
    dataset = store(settings, csv_folder)
    for method in ("full", "lora"):
        with session_factory(settings.db_url)() as s:
            run = create_run(s, dataset, tiny_model, TrainConfig(method=method, **{**FAST, "epochs": 1}))
        assert train.train_run(settings, run.id) == RunStatus.COMPLETED
    full, lora = seen
    for modules in (full, lora):
        assert modules and all(kind is torch.nn.Dropout for kind, _, _ in modules), modules
    assert {p for _, p, _ in full} == {0.1}  # the tiny BERT's hidden and attention dropout
    adapters = [p for _, p, name in lora if "lora_dropout" in name]
    assert len(adapters) == 2 * 3 and set(adapters) == {TrainConfig().lora_dropout}  # query, key, value; 2 layers


def test_each_epoch_meets_the_training_texts_in_a_new_order(settings, csv_folder, tiny_model, monkeypatch):
    """The Trainer tells the sampler each epoch's number through accelerate's data loader; were that lost (a change
    in either library), every epoch would repeat the first one's batches, unlike the article's code."""
    from core.training import trainer as lab_trainer
    from core.training.train import train_run

    orders, iterate = [], lab_trainer.EpochSeededSampler.__iter__

    def spy(self):
        order = list(iterate(self))
        orders.append((self.epoch, order))
        return iter(order)

    monkeypatch.setattr(lab_trainer.EpochSeededSampler, "__iter__", spy)
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        run = create_run(s, dataset, tiny_model, TrainConfig(method="lora", **{**FAST, "epochs": 3}))
    assert train_run(settings, run.id) == RunStatus.COMPLETED
    assert [epoch for epoch, _ in orders] == [0, 1, 2]
    assert len({tuple(order) for _, order in orders}) == 3 and all(sorted(o) == list(range(96)) for _, o in orders)


def test_the_weights_of_the_evaluation_with_the_lowest_dev_loss_are_kept():
    """As the seed article's load_best_model_at_end: the lowest dev loss wins, not the highest dev accuracy."""
    import torch

    recorder = RunRecorder(sessions=None, run_id=1, parent_pid=None, checkpoint_every_s=120)
    model = torch.nn.Linear(2, 2)
    evaluations = [(0.9, 0.70), (0.5, 0.60), (0.7, 0.90), (float("nan"), 0.95)]  # (dev loss, dev accuracy)
    for step, (loss, accuracy) in enumerate(evaluations, start=1):
        with torch.no_grad():
            model.weight.fill_(step)
        state = type("State", (), {"global_step": step})()
        recorder.on_evaluate(None, state, None, metrics={"eval_loss": loss, "eval_accuracy": accuracy}, model=model)
    recorder.restore_best(model)
    assert recorder.best_step == 2
    assert torch.equal(model.weight, torch.full((2, 2), 2.0))


def test_length_batches_cover_every_text_once_and_mostly_hold_one_length():
    from core.training.evaluate import length_batches

    lengths = [5, 3, 5, 9, 3, 3, 7, 5, 5, 2, 5, 3, 9, 9, 9, 9, 1]
    batches = length_batches(lengths, batch_size=4)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(1 <= len(b) <= 4 for b in batches)
    assert [lengths[b[0]] for b in batches] == sorted(lengths[b[0]] for b in batches)  # shortest first
    # A batch is cut where the length changes once it holds batch_size // 4 = 1 text: one length per batch here.
    assert all(len({lengths[i] for i in b}) == 1 for b in batches)
    # With a larger quarter, lengths with few texts share a batch with their neighbours.
    assert any(len({lengths[i] for i in b}) > 1 for b in length_batches(lengths, batch_size=8))
    # A token cap: no batch holds more than 20 tokens (texts x its longest), except a text longer than that, alone.
    capped = length_batches(lengths + [30], batch_size=8, max_tokens=20)
    assert sorted(i for b in capped for i in b) == list(range(len(lengths) + 1))
    assert all(len(b) * max((lengths + [30])[i] for i in b) <= 20 or b == [len(lengths)] for b in capped)
    assert [len(b) for b in capped if (lengths + [30])[b[0]] == 9] == [2, 2, 1]  # five texts of 9 tokens


def test_scoring_in_batches_gives_each_text_what_it_gets_alone(tiny_model, monkeypatch):
    """Batching by length, padding and reordering change nothing: each row is its own text's, in the order given."""
    from core.training import evaluate

    monkeypatch.setattr(evaluate, "bf16_supported", lambda device: False)  # float32: equal to rounding
    model = models.load_classifier(tiny_model, ["a", "b", "c"], get_settings())
    tokenizer = models.load_tokenizer(tiny_model, get_settings())
    texts = ["markets stocks", "新闻：股票", "goal", "stocks bank rates profit", "", "球队 比赛 新闻：", "goal"]
    texts += [f"stocks {'goal ' * n}" for n in range(20)]
    together = evaluate.predict_proba(model, tokenizer, texts, max_length=16, batch_size=4)
    alone = np.concatenate([evaluate.predict_proba(model, tokenizer, [t], max_length=16) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_model_sources(tiny_model, tmp_path, monkeypatch):
    settings = get_settings()
    assert models.resolve(models.BUNDLED, settings).endswith("model")
    model = models.load_classifier(models.BUNDLED, ["a", "b"], settings)
    assert model.config.id2label == {0: "a", 1: "b"} and model.config.model_type == "bert"
    assert models.load_classifier(tiny_model, ["x", "y", "z"], settings).num_labels == 3
    with pytest.raises(models.ModelSourceError, match="does not exist"):
        models.resolve(str(tmp_path / "nope"), settings)
    with pytest.raises(models.ModelSourceError, match="no config.json"):
        models.resolve(str(tmp_path), settings)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(models.ModelSourceError, match="cannot reach Hugging Face"):
        models.load_tokenizer("some-org/not-a-cached-model", settings)


def test_loading_a_classifier_quiets_only_its_own_notice_and_leaves_the_log_level_alone(tiny_model, monkeypatch):
    """load_base runs on page threads: the library's log level, global, stays as it was during and after the load;
    the expected "new head" report is dropped in the loading thread only, and another thread's warning shows."""
    import logging
    import threading

    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    logger = logging.getLogger("transformers.modeling_utils")
    during, records = [], []
    real_load = models._load

    def load_and_look(*args, **kwargs):
        if kwargs.get("weights"):  # the model, not its config
            during.append(hf_logging.get_verbosity())
            other = threading.Thread(target=lambda: logger.warning("another thread's warning"))
            other.start()
            other.join()
        return real_load(*args, **kwargs)

    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger.addHandler(handler)
    monkeypatch.setattr(models, "_load", load_and_look)
    try:
        _, new = models.load_base(tiny_model, ["a", "b", "c"], get_settings())
        logger.warning("after the load")
    finally:
        logger.removeHandler(handler)
    assert new, "the tiny model's head is new: transformers reports it"
    assert during == [before] and hf_logging.get_verbosity() == before
    assert [r.getMessage() for r in records] == ["another thread's warning", "after the load"]


def test_scoring_leaves_the_callers_model_as_it_was_given(tiny_model, monkeypatch):
    """predict_proba neither casts the model to bf16 nor leaves it in eval mode; ready_to_score does that, once, where
    a model that only predicts is loaded."""
    import torch

    from core.training import evaluate

    monkeypatch.setattr(evaluate, "bf16_supported", lambda device: True)  # as on a CPU or GPU that computes in bf16
    model = models.load_classifier(tiny_model, ["a", "b", "c"], get_settings())
    tokenizer = models.load_tokenizer(tiny_model, get_settings())
    model.train()
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    probs = evaluate.predict_proba(model, tokenizer, ["markets stocks", "goal"], max_length=16)
    assert probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1, atol=1e-3)
    assert model.training and {name: p.dtype for name, p in model.named_parameters()} == dtypes
    evaluate.ready_to_score(model)
    assert not model.training and model.classifier.weight.dtype == torch.bfloat16
