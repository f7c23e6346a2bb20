"""The estimate on the Train page (with the won't-fit advice), kept on the queued runs, and the queue's times on
the Runs and Start pages. AppTest, on a temporary database; nothing trains."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from core.jobs import cost, estimate
from core.jobs.runs import create_run
from core.store.db import Probe, Run, RunStatus, session_factory, utcnow
from core.store.settings import get_settings
from core.training.config import TrainConfig
from tests.helpers import store
from tests.test_estimate import large_model  # noqa: F401 - a fixture
from tests.test_pages import no_worker, open_page, texts  # noqa: F401 - no_worker is an autouse fixture


def choose_model(at, folder: str):
    at.radio(key="train_model_kind").set_value(at.radio(key="train_model_kind").options[2]).run()
    return at.text_input(key="train_model_name").set_value(folder).run()


def test_train_page_shows_the_estimate_and_keeps_it_on_the_queued_pair(settings, csv_folder, tiny_model):
    store(settings, csv_folder)
    at = choose_model(open_page("train"), tiny_model)
    assert not at.exception and not at.error
    shown = texts(at.caption)
    assert shown.count("Estimated: training about") == 2, "one estimate per method"
    assert "peak memory" in shown and "test scoring" in shown
    assert shown.count("in all with loading and saving") == 2, "the whole run's time beside its training time"
    assert "From queuing to result, with the queue as it is: the pair about" in shown
    assert "this machine has not finished a run like these yet" in shown, "says it is not calibrated yet"
    assert "may not fit" not in texts(at.warning), "the tiny model fits"
    with session_factory(settings.db_url)() as s:
        assert s.scalar(select(Probe.id)) is not None, "a probe is queued for the worker"
    quick, article = at.radio(key="train_preset").proto.captions  # each preset: roughly how long, here
    assert "Here, on this data: about" in quick and "for the pair." in quick
    assert "for the pair on 3 seeds." in article

    at.number_input(key="train_repeats").set_value(3).run()
    assert "the pair on 3 seeds about" in texts(at.caption), "the queue-to-result time covers every seed"
    at.number_input(key="train_repeats").set_value(1).run()

    at.button(key="train_pair").click().run()
    assert not at.exception
    with session_factory(settings.db_url)() as s:
        runs = list(s.scalars(select(Run).order_by(Run.id)))
    assert [r.method for r in runs] == ["full", "lora"]
    for run in runs:
        assert run.estimate["method"] == run.method and run.estimate["train_seconds"] > 0
        assert run.estimate["raw"]["peak_memory_mb"] > 0  # what calibration compares with when it has ended


def test_train_page_says_what_would_fit(settings, csv_folder, large_model, monkeypatch):  # noqa: F811
    dataset = store(settings, csv_folder)
    config = TrainConfig(method="full", epochs=1, batch_size=32, max_length=64)
    monkeypatch.setenv("LORALAB_DEVICE_MEMORY_MB", "1000000")
    roomy = cost.this_device(get_settings())
    with session_factory(settings.db_url)() as s:
        at32, at16 = (
            estimate.estimate_run(
                settings, s, dataset, large_model, TrainConfig.from_dict({**config.to_dict(), **c}), roomy
            )
            for c in ({}, {"batch_size": 16})
        )
    # a device between the two: batch 32 does not fit, 16 does, and LoRA does
    monkeypatch.setenv("LORALAB_DEVICE_MEMORY_MB", str(round((at32["peak_memory_mb"] + at16["peak_memory_mb"]) / 2)))
    at = choose_model(open_page("train"), large_model)
    at.number_input(key="train_epochs").set_value(1.0).run()
    at.number_input(key="train_max_length").set_value(64).run()
    assert at.number_input(key="train_batch_size").value == 32
    assert not at.exception and not at.error
    warned = texts(at.warning)
    assert "Full fine-tuning may not fit: it needs about" in warned
    assert ": batch size 16 fits, or LoRA. You can still queue it." in warned
    assert "LoRA may not fit" not in warned
    assert not at.button(key="train_pair").disabled, "the pair can still be queued on purpose"


def test_runs_and_start_pages_show_when_the_queue_empties(settings, csv_folder, tiny_model):
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        est = {"total_seconds": 600.0, "train_seconds": 500.0, "peak_memory_mb": 100.0}
        running = create_run(s, dataset, tiny_model, TrainConfig(), estimate=est)
        running.status, running.started_at = RunStatus.RUNNING.value, utcnow() - timedelta(seconds=60)
        waiting = create_run(s, dataset, tiny_model, TrainConfig(), estimate=est)
        s.commit()
        running_id, waiting_id = running.id, waiting.id
    at = open_page("runs", run=str(waiting_id))
    assert not at.exception
    line = next(c.value for c in at.caption if str(c.value).startswith("Expected to start"))
    assert "start in about 9 min" in line and "end in about 19 min" in line  # after the running run's 9 minutes left
    at = open_page("runs")
    table = at.dataframe[0].value
    row = table[table["run"] == waiting_id].iloc[0]
    assert row["estimated train"] == "8 min 20 s" and float(row["estimated peak (MB)"]) == 100.0  # shown as text
    assert row["expected start (UTC)"] is not None
    at = open_page("home")
    assert "The queue should be empty in about 19 min" in texts(at.caption)
    assert running_id


def test_runs_page_shows_estimate_beside_measured(settings, csv_folder, tiny_model):
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        run = create_run(
            s, dataset, tiny_model, TrainConfig(), estimate={"train_seconds": 100.0, "peak_memory_mb": 900}
        )
        run.status, run.train_seconds, run.peak_memory_mb = RunStatus.COMPLETED.value, 120.0, 1100.0
        run.test_metrics = {"accuracy": 0.5, "f1_macro": 0.5}
        s.commit()
        run_id = run.id
    at = open_page("runs", run=str(run_id))
    assert not at.exception
    assert (
        "Estimated before it was queued: training about 1 min 40 s, peak memory 900 MB; it took 2 min and 1.1 GB."
        in texts(at.caption)
    )
