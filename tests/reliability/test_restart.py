"""The dashboard's server restarted mid-run: training goes on, the new server shows the live run, and no second
worker is started. Real processes: `streamlit run app.py`, the worker it starts, headless Chromium."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from core.data import checking, datasets, reading
from core.jobs.runs import create_run
from core.store.db import Run, open_database, session_factory
from core.store.settings import get_settings
from core.training.config import TrainConfig
from tests.e2e.test_browser import ARGS, CHROMIUM, ROOT, free_port, wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing: apt-get install chromium"),
]


def worker_pids(db_url: str) -> list[int]:
    """Every `python -m core worker` process serving this database."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"core" in cmd and b"worker" in cmd and db_url.encode() in cmd:
            pids.append(int(proc.name))
    return pids


def start_dashboard(db_url: str, port: int, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app.py",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
        ],
        cwd=ROOT,
        env={**os.environ, "LORALAB_DB_URL": db_url},
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
    )

    def healthy():
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).status == 200
        except OSError:
            return False

    wait_until(healthy, 60, "the dashboard to answer", every=0.5)
    return proc


def run_of(db_url, run_id) -> Run:
    with session_factory(db_url, read_only=True)() as s:
        return s.get(Run, run_id)


def test_restarting_the_dashboard_loses_nothing_and_starts_no_second_worker(tmp_path, csv_folder, tiny_model):
    from playwright.sync_api import expect, sync_playwright

    db_url = f"sqlite:///{tmp_path / 'restart.db'}"
    settings = get_settings(db_url)
    open_database(db_url)
    check = checking.check_dataset(reading.files_from_folder(csv_folder), settings)
    with session_factory(db_url)() as s:
        dataset = datasets.save_dataset(s, settings, check, "tiny")
        run = create_run(s, dataset, tiny_model, TrainConfig(method="full", epochs=40, batch_size=8, max_length=32))
    port, log = free_port(), tmp_path / "streamlit.log"
    dashboard = start_dashboard(db_url, port, log)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")  # the first page load starts the worker
            wait_until(lambda: run_of(db_url, run.id).step > 0, 120, "the run to train")
            worker = worker_pids(db_url)
            assert len(worker) == 1

            dashboard.send_signal(signal.SIGKILL)  # the server dies mid-run
            dashboard.wait()
            step = run_of(db_url, run.id).step
            wait_until(lambda: run_of(db_url, run.id).step > step, 60, "training to go on without the dashboard")

            dashboard = start_dashboard(db_url, port, log)
            page.goto(f"http://127.0.0.1:{port}/runs?run={run.id}")
            expect(page.get_by_text("running").first).to_be_visible(timeout=60_000)
            expect(page.get_by_role("button", name="Cancel this run").first).to_be_visible()
            time.sleep(3)  # a page load that found no worker would have started one by now
            assert worker_pids(db_url) == worker  # the same worker, and only it
            wait_until(lambda: run_of(db_url, run.id).status == "completed", 600, "the run to complete")
            browser.close()
    finally:
        dashboard.kill()
        dashboard.wait()
        for pid in worker_pids(db_url):
            os.kill(pid, signal.SIGTERM)
