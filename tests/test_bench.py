"""The benchmark's smoke mode, run as CI runs it, so that bench/train_bench.py cannot rot. No timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_bench(args: list[str], env: dict | None = None) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """Run a benchmark script as a user would (none of this machine's LORALAB_ settings); its output and JSON lines."""
    done = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={k: v for k, v in os.environ.items() if not k.startswith("LORALAB_")} | (env or {}),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done, [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_smoke_benchmark_prints_json_lines_a_table_and_writes_a_png(tmp_path):
    out = tmp_path / "bench-out"
    done, lines = run_bench(["bench/train_bench.py", "--smoke", "--out", str(out)])
    measurements = [r for r in lines if r["kind"] == "measurement"]
    assert {(r["method"], r["pipeline"]) for r in measurements} == {
        (m, p) for m in ("full", "lora") for p in ("reference", "ours")
    }
    for r in measurements:
        for key in ("train_seconds", "samples_per_second", "peak_memory_mb", "scoring_seconds", "latency_p50_ms"):
            assert r[key] > 0, key
        assert 0 <= r["test_accuracy"] <= 1 and 0 <= r["test_f1_macro"] <= 1
    assert lines[-1]["kind"] == "summary"
    assert "| method | pipeline | train s | samples/s | ours / ref |" in done.stdout
    assert [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()] == measurements
    table = (out / "table.md").read_text()
    assert "| lora | ours |" in table
    for r in measurements:  # the seed-by-seed table pairs the two pipelines' runs on one seed
        assert f"| {r['method']} | {r['seed']} | " in table
    assert "| full | mean of 1 |" in table and "| lora | mean of 1 |" in table
    assert "| smoke | 1 | full | 1 | **" in table and "| smoke | 1 | lora | 1 | **" in table  # the overview
    assert (out / "train_bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lora_share_trains_both_methods_in_both_variants_and_prints_their_ratios(csv_folder, tiny_model):
    done, runs = run_bench(
        ["bench/lora_share.py", "--data", str(csv_folder), "--model", tiny_model, "--rounds", "1"],
        {"LORALAB_MODEL_ROOTS": tiny_model},
    )
    assert [(r["variant"], r["method"]) for r in runs] == [(v, m) for v in ("torch", "free") for m in ("full", "lora")]
    assert all(r["train_seconds"] > 0 and 0 <= r["test_accuracy"] <= 1 for r in runs)
    assert "torch: LoRA / full train time" in done.stdout and "free : LoRA / full train time" in done.stdout


def test_estimate_bench_times_each_probe_beside_a_competing_load_and_compares_with_the_run(tmp_path, tiny_model):
    out = tmp_path / "estimate-out"
    _, runs = run_bench(
        ["bench/estimate_bench.py", "--runs", "2", "--probe-load", "1", "--model", tiny_model, "--out", str(out)],
        {"LORALAB_MODEL_ROOTS": tiny_model},
    )
    assert [(r["method"], r["status"], r["calibrated_by"], r["probe_load"]) for r in runs] == [
        ("full", "completed", 0, 1),
        ("lora", "completed", 0, 1),
    ]
    for r in runs:  # estimated from its probe alone, timed beside one busy program
        assert 0 < r["probe_cpu_share"] <= 1 and r["time_ratio"] > 0 and r["time_ratio_by_load"] > 0
        assert r["probe_time_used"] == (r["probe_cpu_share"] >= 0.9) and r["time_ratio_by_share"] > 0
    table = (out / "table.md").read_text()
    assert "| # | method | probe CPU share |" in table and "Time: " in table and " of 2 within 0.67-1.5x." in table


def test_study_bench_times_a_comparison_a_study_and_the_full_grid(tmp_path):
    out = tmp_path / "bench-out"
    done, lines = run_bench(["bench/study_bench.py", "--smoke", "--out", str(out)])
    runs = [r for r in lines if r["kind"] == "run"]
    phases = {r["phase"] for r in runs}  # "smoke: grid" too where the study stopped a rate early
    assert (
        {"quick demo", "smoke: comparison", "smoke: study"}
        <= phases
        <= {
            "quick demo",
            "smoke: comparison",
            "smoke: study",
            "smoke: grid",
        }
    )
    grid = [r for r in runs if r["phase"] == "smoke: grid"]
    assert sorted((r["method"], r["lr"]) for r in grid) == sorted(
        (r["method"], r["lr"]) for r in runs if r["phase"] == "smoke: study" and r["stopped_early"]
    )
    study = [r for r in runs if r["phase"] == "smoke: study"]
    assert sorted((r["role"], r["method"], r["seed"]) for r in study) == [
        ("default", "full", 42),
        ("default", "lora", 42),
        ("final", "full", 43),
        ("final", "lora", 43),
        ("grid", "full", 42),
        ("grid", "lora", 42),
    ]
    for r in runs:
        assert r["wall_seconds"] > r["train_seconds"] > 0 and r["fixed_seconds"] > 0
        assert set(r["stages"]) == {"start", "load", "save", "score"}
    assert not any(r["warm"] for r in runs if r["phase"] == "quick demo")  # launched alone: its own process
    assert any(r["warm"] for r in study)  # queued one after another: the worker's process started ahead
    (result,) = [r for r in lines if r["kind"] == "dataset"]
    assert result["ratio"] > 0 and result["deterministic"] is True
    assert {r["lr"] for r in study if r["role"] == "final"} == {p["chosen"] for p in result["picks"].values()}
    assert "| smoke |" in (out / "study_bench.md").read_text() and "fixed cost" in done.stdout
