"""How soon a cold start shows its first page: `streamlit run app.py` on an empty database, then a real browser.

    .venv/bin/python bench/cold_start.py            # 5 cold starts; needs /usr/bin/chromium (Playwright drives it)
    .venv/bin/python bench/cold_start.py --existing # on a database that exists: a restart, not a first visit

Each start is a new server on a new, empty database (the first visit of a new user). Timed for each, from the
browser's request of the Start page: the navigation drawn, the page's title and introduction shown, and the part
that reads the database ("Next step") shown; and,
from the server process's launch, when it answers its health check. Medians and ranges are printed, then one JSON
line. Measure on a quiet machine: a second process on the same cores shows up here at once.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_start(page, work: Path, existing: bool = False) -> dict:
    """One server on a new database (or, `existing`, one made before the server starts), one first visit; the
    worker it starts is stopped with it."""
    if existing:
        from core.store.db import open_database

        open_database(f"sqlite:///{work / 'runs.db'}")
    env = {**os.environ, "LORALAB_DB_URL": f"sqlite:///{work / 'runs.db'}"}
    env.pop("LORALAB_DATA_DIR", None)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    launched = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
        + ["--server.address", "127.0.0.1", "--server.fileWatcherType", "none", "--server.headless", "true"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while True:
            try:
                if urllib.request.urlopen(f"{base}/_stcore/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.05)
            if server.poll() is not None or time.perf_counter() - launched > 120:
                raise SystemExit("The dashboard did not start: run `streamlit run app.py` to see why.")
        healthy = time.perf_counter() - launched
        asked = time.perf_counter()
        page.goto(base)
        page.locator("[data-testid*=NavLink]").first.wait_for(timeout=120_000)
        navigation = time.perf_counter() - asked
        page.get_by_role("heading", name="LoRA Lab").wait_for(timeout=120_000)
        title = time.perf_counter() - asked
        page.get_by_text("Next step").wait_for(timeout=120_000)
        content = time.perf_counter() - asked
        return {"server_ready_s": healthy, "navigation_s": navigation, "page_title_s": title, "first_page_s": content}
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        stop_worker(work)


def stop_worker(work: Path) -> None:
    """The worker the dashboard started (its own session, its pid in the lock file) is stopped too."""
    from core.jobs.worker import lock_path
    from core.store.settings import get_settings

    for _ in range(100):  # the lock file briefly holds other pids while the worker starts
        try:
            pid = int(lock_path(get_settings(f"sqlite:///{work / 'runs.db'}")).read_text().strip())
            if b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, 15)
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.2)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--starts", type=int, default=5)
    p.add_argument(
        "--existing", action="store_true", help="a database made before each start (a restart, not a new user)"
    )
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from playwright.sync_api import sync_playwright

    rows = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        for i in range(args.starts):
            work = Path(tempfile.mkdtemp(prefix="cold_start-"))
            page = browser.new_page(viewport={"width": 1024, "height": 768})
            try:
                rows.append({"load_avg": round(os.getloadavg()[0], 2), **one_start(page, work, args.existing)})
            finally:
                page.close()
                shutil.rmtree(work, ignore_errors=True)
            print(json.dumps({"start": i + 1, **{k: round(v, 2) for k, v in rows[-1].items()}}), flush=True)
        browser.close()
    summary = {
        k: {
            "median": round(statistics.median(r[k] for r in rows), 2),
            "range": [round(min(r[k] for r in rows), 2), round(max(r[k] for r in rows), 2)],
        }
        for k in ("server_ready_s", "navigation_s", "page_title_s", "first_page_s")
    }
    for k, v in summary.items():
        print(f"{k}: median {v['median']} s (range {v['range'][0]}-{v['range'][1]})")
    print(json.dumps({"kind": "summary", "starts": len(rows), **summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
