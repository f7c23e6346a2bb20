"""The cost model (counts against hand-computed ones), its calibration on stored runs, the won't-fit advice, the
queue's times and the `estimate` command."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from core import words
from core.jobs import cost, estimate, probe, queue
from core.store.db import Probe, Run, RunStatus, session_factory
from core.store.settings import get_settings
from core.training import machine_load
from core.training.config import TrainConfig
from core.training.methods import param_counts
from tests.helpers import ROOT, store

# The tiny BERT of conftest: hidden 32, 2 layers, 2 heads, intermediate 64, 128 positions, 3 classes.
H, LAYERS, INTER, POS, CLASSES = 32, 2, 64, 128, 3


def hand_counts(vocab: int) -> dict:
    """Parameters and Linear weights of the tiny BERT classifier, counted by hand."""
    embeddings = vocab * H + POS * H + 2 * H + 2 * H  # words, positions, token types, LayerNorm
    layer = 4 * (H * H + H) + 2 * H + (H * INTER + INTER) + (INTER * H + H) + 2 * H
    pooler, head = H * H + H, H * CLASSES + CLASSES
    total = embeddings + LAYERS * layer + pooler + head
    linear = LAYERS * (4 * H * H + 2 * H * INTER) + H * H + H * CLASSES
    adapters = LAYERS * 3 * (8 * H + H * 8)  # r=8 on query, key, value: A (8 x 32) and B (32 x 8), no bias
    return {
        "full": {
            "total": total,
            "trainable": total,
            "linear": linear,
            "trainable_linear": linear,
            "adapted_features": 0,
            "scored_linear": linear,
        },
        # peft keeps the original head and trains a copy of it (modules_to_save)
        "lora": {
            "total": total + adapters + head,
            "trainable": adapters + head,
            "linear": linear + adapters + H * CLASSES,
            "trainable_linear": adapters + H * CLASSES,
            "adapted_features": LAYERS * 3 * (H + H),  # query, key, value: 32 in, 32 out
            "scored_linear": linear,  # scored merged: the plain model's weights, no adapters, one head
        },
    }


def test_counts_match_hand_computed_and_the_loaded_model(tiny_model):
    from core.training import models

    vocab = len(models.load_tokenizer(tiny_model, get_settings()))
    expected = hand_counts(vocab)
    loaded = param_counts(tiny_model, ["a", "b", "c"], TrainConfig(method="lora"), get_settings())
    for method in ("full", "lora"):
        shape = cost.model_shape(tiny_model, CLASSES, TrainConfig(method=method), get_settings())
        got = {k: getattr(shape, k) for k in expected[method]}
        assert got == expected[method]
        assert (shape.trainable, shape.total) == loaded[method]  # as the run itself will count them
        assert (shape.layers, shape.hidden, shape.heads) == (LAYERS, H, 2)


def test_operations_per_token_against_hand_computed(tiny_model):
    full = cost.model_shape(tiny_model, CLASSES, TrainConfig(method="full"), get_settings())
    lora = cost.model_shape(tiny_model, CLASSES, TrainConfig(method="lora"), get_settings())
    seq, attention = 10, 4 * LAYERS * H * 10  # scores and weighted sum, per token, forward
    assert cost.forward_flops_per_token(full, seq) == 2 * full.linear + attention
    # full: forward, backward through activations and weights, about 6 per weight
    assert cost.train_flops_per_token(full, seq) == 6 * full.linear + 3 * attention == 112_704
    # LoRA: backward through the activations of every layer, weight gradients only for adapters and head, and the
    # adapters' memory-bound work (dropout, sums) per feature they read or write
    adapters = cost.ADAPTER_FLOPS_PER_FEATURE * LAYERS * 3 * 2 * H
    products = 4 * lora.linear + 2 * lora.trainable_linear + 3 * attention
    assert products == 96_704 and cost.train_flops_per_token(lora, seq) == products + adapters


def test_the_probe_and_the_estimate_time_a_step_alike(tiny_model):
    """core.jobs.probe times one step and divides by raw_step_seconds: a run's estimate must be its steps at that
    price, plus its evaluations, or a probe would calibrate something the estimate does not compute."""
    config = TrainConfig(method="lora", epochs=1.5, batch_size=4)
    shape = cost.model_shape(tiny_model, CLASSES, config, get_settings())
    lengths = [3, 9, 5, 12, 7, 7, 2, 30, 4, 6, 11]
    for kind in ("cpu", "gpu"):
        device = cost.Device(kind, "x", kind == "cpu", 0.0)
        raw = cost.raw_estimate(shape, {"train": lengths, "dev": [], "test": []}, config, device)
        per_step = cost.raw_step_seconds(shape, cost.train_batches(lengths, 4, config.seed), kind)
        evals = raw["evals"] * cost.PRIOR[kind]["eval_s"]
        assert raw["steps"] == 5 and raw["train_seconds"] == pytest.approx(raw["steps"] * per_step + evals)


def test_batches_and_schedule_as_the_trainer_makes_them():
    # random batches (as the engine's sampler), each padded to its longest text
    batches = cost.train_batches(list(range(1, 11)), 4, seed=3)
    assert [n for n, _ in batches] == [4, 4, 2] and max(pad for _, pad in batches) == 10
    assert batches == cost.train_batches(list(range(1, 11)), 4, seed=3)
    lengths = [8] * 90 + [40] * 10  # a few long texts pad most random batches, unlike length-sorted ones
    padded = sum(n * pad for n, pad in cost.train_batches(lengths, 10, seed=0))
    assert padded > sum(lengths) * 2
    assert cost.eval_batches([5, 1, 3, 2, 4], 2) == [(2, 2), (2, 4), (1, 5)]
    assert cost.schedule(TrainConfig(epochs=3, batch_size=32, evals_per_epoch=2), 96) == (9, 9)
    assert cost.schedule(TrainConfig(epochs=1.5, batch_size=32, evals_per_epoch=2), 100) == (6, 3)


def test_real_token_lengths_decide_the_work_not_max_length(settings, csv_folder, tiny_model):
    dataset = store(settings, csv_folder)
    device = cost.Device("cpu", "test cpu", False, 10_000)
    with session_factory(settings.db_url)() as s:
        short = estimate.estimate_run(settings, s, dataset, tiny_model, TrainConfig(max_length=64), device)
        long = estimate.estimate_run(settings, s, dataset, tiny_model, TrainConfig(max_length=512), device)
        cut = estimate.estimate_run(settings, s, dataset, tiny_model, TrainConfig(max_length=6), device)
    assert short["raw"]["train_flops"] == long["raw"]["train_flops"]  # the texts are shorter than 64 tokens
    assert cut["raw"]["train_flops"] < short["raw"]["train_flops"]  # truncated at 6, they cost less
    lengths = cost.token_lengths(settings, dataset, tiny_model)
    assert {len(v) for v in lengths.values()} == {96, 24} and max(lengths["train"]) < 64
    assert list((settings.data_dir / dataset.path).glob("token-lengths-*.json"))  # tokenized once, kept


def finished(method, raw_s, measured_s, raw_mb=800.0, measured_mb=900.0, model="m", device="dev") -> Run:
    start = datetime(2026, 1, 1)
    return Run(
        method=method,
        model_source=model,
        status=RunStatus.COMPLETED.value,
        device=device,
        train_seconds=measured_s,
        score_seconds=None,
        peak_memory_mb=measured_mb,
        started_at=start,
        finished_at=start + timedelta(seconds=measured_s + 10),
        estimate={"raw": {"train_seconds": raw_s, "score_seconds": 1.0, "peak_memory_mb": raw_mb}},
    )


RAW = {"train_seconds": 10.0, "score_seconds": 1.0, "overhead_seconds": 12.0, "peak_memory_mb": 800.0}


def test_calibration_moves_toward_stored_runs():
    """Runs that took 3x their raw estimate pull the estimate toward 3x, more with each run."""
    runs, got = [], []
    for _ in range(4):
        got.append(estimate.calibrate(RAW, "lora", "m", runs)["train_seconds"])
        runs.append(finished("lora", 10.0, 30.0))
    assert got[0] == 10.0  # no run yet: the model alone
    assert got[0] < got[1] < got[2] < got[3] < 30.0
    assert got[2] / 30.0 > 0.67  # two finished runs: within the target band
    memory = estimate.calibrate(RAW, "lora", "m", runs)["peak_memory_mb"]
    assert 800 < memory < 900  # measured 100 MB more than estimated: pulled toward it


def test_calibration_learns_the_cost_of_a_step_apart_from_the_tokens():
    """Runs whose fixed costs per step are 3x what the model says, and whose token work is as it says: a run of many
    small steps is then estimated slower than one of few large steps with the same raw time, and each nearer the
    truth with every run; one ratio for both could not be right for both."""
    few = {**RAW, "step_seconds": 1.0}  # 9 s of token work, 1 s of steps: takes 9 + 3 = 12 s
    many = {**RAW, "step_seconds": 8.0}  # 2 s of token work, 8 s of steps: takes 2 + 24 = 26 s
    runs, errors = [], []
    for _ in range(3):
        for raw, took in ((few, 12.0), (many, 26.0)):
            run = finished("lora", 10.0, took)
            run.estimate = {"raw": raw}
            runs.append(run)
        got_few = estimate.calibrate(few, "lora", "m", runs)["train_seconds"]
        got_many = estimate.calibrate(many, "lora", "m", runs)["train_seconds"]
        errors.append(abs(math.log(got_many / 26.0)) + abs(math.log(got_few / 12.0)))
        assert 0.9 < got_few / 12.0 < 1.1 and got_many > 1.4 * got_few
    assert errors[0] > errors[1] > errors[2] and 0.8 < got_many / 26.0 < 1.0
    # Runs all of one mix leave the split where it was: the one ratio, averaged in logs (as before there were two)
    same = [finished("lora", 10.0, 30.0) for _ in range(2)]
    assert estimate.calibrate(RAW, "lora", "m", same)["train_seconds"] == round(10.0 * 3 ** (2 / 2.5), 1)


def test_calibration_weighs_other_methods_and_models_less():
    similar = estimate.calibrate(RAW, "lora", "m", [finished("lora", 10.0, 30.0)])
    other = estimate.calibrate(RAW, "lora", "m", [finished("full", 10.0, 30.0, model="other")])
    assert 10.0 < other["train_seconds"] < similar["train_seconds"]
    assert (similar["similar_runs"], other["similar_runs"], other["other_runs"]) == (1, 0, 1)
    probed = estimate.calibrate(RAW, "lora", "m", [], probe={"time_ratio": 2.0, "memory_offset_mb": 50.0})
    assert probed["train_seconds"] == 20.0 and probed["peak_memory_mb"] == 850 and probed["probed"]


def test_estimate_uses_this_devices_finished_runs(settings, csv_folder, tiny_model):
    dataset = store(settings, csv_folder)
    device = cost.Device("cpu", "test cpu", False, 10_000)
    config = TrainConfig(method="lora")
    with session_factory(settings.db_url)() as s:
        before = estimate.estimate_run(settings, s, dataset, tiny_model, config, device)
        for device_name in ("test cpu", "another machine"):
            run = finished(
                "lora", before["raw"]["train_seconds"], 5 * before["raw"]["train_seconds"], device=device_name
            )
            run.model_source, run.dataset_name, run.config = tiny_model, dataset.name, config.to_dict()
            s.add(run)
        s.commit()
        after = estimate.estimate_run(settings, s, dataset, tiny_model, config, device)
    assert after["similar_runs"] == 1 and after["other_runs"] == 0  # the other machine's run does not count
    assert after["train_seconds"] > 2 * before["train_seconds"]


@pytest.fixture(scope="session")
def large_model(tmp_path_factory, tiny_model):
    """A BERT-large-sized config and the tiny tokenizer, no weights: the estimate never reads weights."""
    from transformers import BertConfig

    folder = tmp_path_factory.mktemp("large-bert")
    for file in Path(tiny_model).iterdir():
        if file.name not in ("config.json", "model.safetensors"):
            shutil.copy(file, folder)
    config = BertConfig(vocab_size=30522, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16)
    config.save_pretrained(folder)
    return str(folder)


def test_wont_fit_advice_names_what_fits(settings, csv_folder, large_model):
    dataset = store(settings, csv_folder)
    config = TrainConfig(method="full", batch_size=32, max_length=512)
    with session_factory(settings.db_url)() as s:
        roomy = cost.Device("gpu", "test gpu", True, 100_000)
        at32 = estimate.estimate_run(settings, s, dataset, large_model, config, roomy)
        small = TrainConfig.from_dict({**config.to_dict(), "batch_size": 16})
        at16 = estimate.estimate_run(settings, s, dataset, large_model, small, roomy)
        assert estimate.advice(settings, s, dataset, large_model, config, at32, roomy) is None
        tight = cost.Device("gpu", "test gpu", True, (at32["peak_memory_mb"] + at16["peak_memory_mb"]) / 2)
        said = estimate.advice(settings, s, dataset, large_model, config, at32, tight)
        assert said.startswith(f"needs about {words.memory_text(at32['peak_memory_mb'])}, this GPU has ")
        assert said.endswith(": batch size 16 fits, or LoRA.")
        lora = TrainConfig.from_dict({**config.to_dict(), "method": "lora", "learning_rate": None})
        at_lora = estimate.estimate_run(settings, s, dataset, large_model, lora, roomy)
        tiny = cost.Device("cpu", "test cpu", True, at_lora["peak_memory_mb"] / 2)
        said = estimate.advice(settings, s, dataset, large_model, config, at32, tiny)
        assert "this machine has" in said and "even batch size 1 does not fit" in said
    assert at32["peak_memory_mb"] > 4 * 1024  # 335 M parameters with AdamW: several GB


def queued(run_id, status, total=None, memory=None, started=None) -> Run:
    est = {"total_seconds": total, "train_seconds": total, "peak_memory_mb": memory} if total else None
    return Run(id=run_id, status=status.value, started_at=started, estimate=est, step=0)


def test_queue_times_one_at_a_time():
    now = datetime(2026, 1, 1, 12, 0, 0)
    active = [
        queued(1, RunStatus.RUNNING, total=100, started=now - timedelta(seconds=60)),
        queued(2, RunStatus.QUEUED, total=50),
        queued(3, RunStatus.QUEUED, total=30),
    ]
    times = queue.queue_times(active, now, slots=1, memory_mb=1000)
    assert times[1] == (now - timedelta(seconds=60), now + timedelta(seconds=40))
    assert times[2] == (now + timedelta(seconds=40), now + timedelta(seconds=90))
    assert times[3] == (now + timedelta(seconds=90), now + timedelta(seconds=120))
    assert queue.queue_empties_at(times) == now + timedelta(seconds=120)


def test_queue_times_side_by_side_where_memory_allows():
    now = datetime(2026, 1, 1, 12, 0, 0)
    active = [queued(i, RunStatus.QUEUED, total=100, memory=400) for i in (1, 2, 3)]
    times = queue.queue_times(active, now, slots=2, memory_mb=1000)
    assert [times[i][0] for i in (1, 2, 3)] == [now, now, now + timedelta(seconds=100)]
    times = queue.queue_times(active, now, slots=4, memory_mb=700)  # room for one at a time
    assert [times[i][0] for i in (1, 2, 3)] == [now + timedelta(seconds=100 * i) for i in range(3)]
    unknown = queue.queue_times([queued(1, RunStatus.QUEUED), queued(2, RunStatus.QUEUED, total=5)], now, 1, 1e9)
    assert unknown[1] == (now, None) and unknown[2] == (None, None)
    assert queue.queue_empties_at(unknown) is None
    # A running run without a memory estimate (but a time from the recent runs): the next starts once it has ended.
    running = queued(1, RunStatus.RUNNING, total=100, started=now)
    running.estimate = None
    times = queue.queue_times([running, queued(2, RunStatus.QUEUED, total=50, memory=100)], now, 2, 1e9, 100.0)
    assert times[2][0] == now + timedelta(seconds=100)


def test_durations_read_as_a_person_plans():
    cases = {
        0: "0 s",
        0.01: "under 0.1 s",
        0.24: "0.2 s",
        0.96: "1 s",
        42.4: "42 s",
        130: "2 min 10 s",
        600: "10 min",
        7260: "2 h 1 min",
    }
    assert {s: words.duration_text(s) for s in cases} == cases


def test_fits_beside():
    assert queue.fits_beside([], 10_000, 100, slots=1)  # alone, it starts even when estimated not to fit
    assert not queue.fits_beside([100], 100, 1000, slots=1)
    assert queue.fits_beside([100], 100, 1000, slots=2)
    assert not queue.fits_beside([600], 500, 1000, slots=2)
    assert not queue.fits_beside([100], None, 1000, slots=2)  # no estimate: only alone
    assert not queue.fits_beside([None], 100, 1000, slots=2)  # nothing beside a run of unknown size either
    assert not queue.fits_beside([100, None], 100, 1000, slots=3)


def test_estimate_command_pair_json(settings, csv_folder, tiny_model):
    out = subprocess.run(
        [sys.executable, "-m", "core", "estimate", "--db", settings.db_url, "--model", tiny_model, "--pair", "--json"]
        + [f"--{s}={csv_folder / (s + '.csv')}" for s in ("train", "dev", "test")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result) == {"full", "lora"}
    for method, e in result.items():
        assert e["method"] == method
        assert e["train_seconds"] > 0 and e["peak_memory_mb"] > 0 and e["score_seconds"] > 0


def test_a_busy_cpu_slows_the_estimate_and_the_runs_it_learns_from():
    assert machine_load.cpu_slowdown(None, 2) == machine_load.cpu_slowdown(1.5, 2) == 1.0
    assert machine_load.cpu_slowdown(8.0, 2) == 4.0
    busy = finished("lora", 10.0, 40.0, device="CPU: test")  # 4x its estimate, on a CPU four times oversubscribed
    busy.load_average, busy.cpu_count = 8.0, 2
    quiet = estimate.calibrate(RAW, "lora", "m", [busy], slowdown=1.0)
    assert quiet["train_seconds"] == 10.0  # taken back to a quiet machine, it ran as the model said
    assert estimate.calibrate(RAW, "lora", "m", [busy], slowdown=3.0)["train_seconds"] == 30.0


def test_a_run_held_back_by_other_work_does_not_calibrate_the_time():
    """A run that took 3x its estimate because other work took 3 of every 4 seconds its threads were ready to run,
    while the load average it recorded (a minute's trailing mean) still looked quiet, says nothing of this machine's
    speed: 1 / share does not take it back (threads that take turns also wait for each other; here it would say
    0.75x), so its time is not used; its memory is. One that ran nearly alone is taken back by its share."""
    held_back = finished("lora", 10.0, 30.0, measured_mb=1000.0, device="CPU: test")
    held_back.load_average, held_back.cpu_count, held_back.cpu_share = 1.0, 2, 0.25
    out = estimate.calibrate(RAW, "lora", "m", [held_back])
    assert out["train_seconds"] == 10.0 and out["similar_runs"] == 1  # the cost model's, as with no run
    assert out["peak_memory_mb"] > estimate.calibrate(RAW, "lora", "m", [])["peak_memory_mb"]
    nearly_alone = finished("lora", 10.0, 10.0 / 0.95, device="CPU: test")
    nearly_alone.load_average, nearly_alone.cpu_count, nearly_alone.cpu_share = 1.0, 2, 0.95
    assert estimate.calibrate(RAW, "lora", "m", [nearly_alone])["train_seconds"] == 10.0
    assert (
        machine_load.measured_slowdown(None, 8.0, 2) == 4.0
    )  # not measured (older runs, not Linux): the load average


def burn_cpu_0(seconds: float) -> subprocess.Popen:
    code = f"import os, time\nos.sched_setaffinity(0, {{0}})\nend = time.time() + {seconds}\n"
    return subprocess.Popen([sys.executable, "-c", code + "while time.time() < end: pass"])


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or not os.path.exists("/proc/self/task"), reason="Linux only")
def test_the_cpu_share_measures_other_programs_taking_the_cpu():
    """Busy on one CPU beside two other programs busy on the same CPU, this process's threads run about a third of
    the time they are ready to (less where the machine is busier still); the load average would show it a minute
    later."""
    burners = [burn_cpu_0(5.0) for _ in range(2)]
    try:
        affinity = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {0})
        try:
            time.sleep(0.5)  # the burners have started
            before, end = machine_load.scheduler_times(), time.time() + 1.0
            while time.time() < end:
                pass
            share = machine_load.cpu_share(before, machine_load.scheduler_times())
        finally:
            os.sched_setaffinity(0, affinity)
    finally:
        for p in burners:
            p.kill()
            p.wait()
    assert 0 < share < 0.5
    assert machine_load.measured_slowdown(share, 0.5, 2) == pytest.approx(1 / share)


def test_a_probe_timed_before_its_cpu_share_was_measured_is_taken_again(settings, csv_folder, tiny_model):
    """A probe stored before probes measured what held them back may have been timed at a busy moment (the 13.5x
    LoRA probe): the estimate does not use it, and a new probe is queued for the worker."""
    dataset = store(settings, csv_folder)
    device = cost.Device("cpu", "test cpu", False, 10_000)
    key = probe.probe_key(device, "lora", tiny_model)
    with session_factory(settings.db_url)() as s:
        s.add(Probe(key=key, status="done", model_source=tiny_model, config={}, result={"time_ratio": 13.5}))
        s.commit()
        got = estimate.estimate_run(settings, s, dataset, tiny_model, TrainConfig(method="lora"), device, probe=True)
        assert not got["probed"] and got["train_seconds"] == pytest.approx(got["raw"]["train_seconds"], abs=0.1)
        assert [p.status for p in s.scalars(select(Probe).order_by(Probe.id))] == ["done", "queued"]


def test_lora_is_scored_as_full_is(settings, csv_folder, tiny_model):
    """A LoRA model is scored merged, as the plain model: its scoring estimate is full fine-tuning's, for the same
    data, whatever the two methods' probes and finished runs measured of their training."""
    dataset = store(settings, csv_folder)
    device = cost.Device("cpu", "test cpu", False, 10_000)
    configs = {m: TrainConfig(method=m) for m in ("full", "lora")}
    with session_factory(settings.db_url)() as s:
        for method, ratio in (("full", 2.6), ("lora", 13.5)):  # the LoRA probe poisoned by a busy moment
            key = probe.probe_key(device, method, tiny_model)
            result = {"time_ratio": ratio, "slowdown": 1.0}
            s.add(Probe(key=key, status="done", model_source=tiny_model, config={}, result=result))
        s.commit()
        first = {m: estimate.estimate_run(settings, s, dataset, tiny_model, c, device) for m, c in configs.items()}
        for method, score_s in (("full", 2.0), ("lora", 3.0)):
            raw = first[method]["raw"]
            run = finished(method, raw["train_seconds"], 3 * raw["train_seconds"], device="test cpu")
            run.model_source, run.dataset_name, run.config = tiny_model, dataset.name, configs[method].to_dict()
            run.estimate, run.score_seconds = first[method], score_s
            s.add(run)
        s.commit()
        after = {m: estimate.estimate_run(settings, s, dataset, tiny_model, c, device) for m, c in configs.items()}
    for estimates in (first, after):
        assert estimates["lora"]["raw"]["score_seconds"] == estimates["full"]["raw"]["score_seconds"]
        assert estimates["lora"]["score_seconds"] == estimates["full"]["score_seconds"]
    assert first["full"]["score_seconds"] < 13.5 * first["full"]["raw"]["score_seconds"]
    assert after["full"]["score_seconds"] != first["full"]["score_seconds"]  # the runs' scoring moved both


def test_queue_to_result_counts_every_run_queued(settings):
    device = cost.Device("cpu", "test cpu", False, 10_000)  # one run at a time
    pair = [{"total_seconds": 60.0, "peak_memory_mb": 100.0}, {"total_seconds": 40.0, "peak_memory_mb": 100.0}]
    now = datetime(2026, 1, 1)
    with session_factory(settings.db_url)() as s:
        assert queue.queue_to_result(settings, s, device, pair, now) == 100.0
        assert queue.queue_to_result(settings, s, device, pair * 3, now) == 300.0  # three seeds
