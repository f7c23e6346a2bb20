"""The whole path in a real browser: `streamlit run app.py` on a temporary database, driven by headless Chromium.

Upload three small CSVs, queue a full-vs-LoRA pair on the bundled model, watch a live curve move, wait for both
runs, compare them, predict a sentence, download the LoRA model and a labelled file. A screenshot of each page is
saved under screenshots/: the whole page at the width of a classroom projector (1024 pixels), and its first screen
as a class sees it (1024 x 768, `-screen`). A second, short test uploads Chinese titles and sees, on Data and on
Train, that the bundled English model does not know most of the text, before anything is queued. A third launches a
small study from Train (LoRA at two ranks against full fine-tuning, one seed), follows it on Compare and screenshots
its chart.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from core.jobs.worker import lock_path
from core.store.db import Run, RunStatus, session_factory
from tests.helpers import wait_for, zh_folder

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "screenshots"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

WIDTH, HEIGHT = 1024, 768  # a classroom projector
# Records every set of navigation links the page draws, from its very first paint: the first visit must draw the
# real navigation first (Streamlit showed the raw file names of pages/ first, with an empty page, for seconds).
RECORD_NAVIGATION = """
window.__navs = [];
new MutationObserver(() => {
  const links = [...document.querySelectorAll('[data-testid*=NavLink]')]
    .map(a => a.innerText.trim().split('\\n').pop());
  const seen = JSON.stringify([...new Set(links)]);
  if (links.length && (!window.__navs.length || window.__navs[window.__navs.length - 1] !== seen))
    window.__navs.push(seen);
}).observe(document, {subtree: true, childList: true, characterData: true});
"""
STEPS = ["Start", "Data", "Train", "Runs", "Compare", "Predict"]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing: apt-get install chromium"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def small_csvs(folder: Path) -> Path:
    """60 / 20 / 20 rows of the demo set (news titles, 5 classes), in the seed layout, and its class names."""
    folder.mkdir()
    demo = ROOT / "assets" / "demo"
    for split, n in (("train", 60), ("dev", 20), ("test", 20)):
        lines = (demo / f"{split}.csv").read_text(encoding="utf-8").splitlines()
        (folder / f"{split}.csv").write_text("\n".join(lines[: n + 1]) + "\n", encoding="utf-8")
    (folder / "classes.txt").write_bytes((demo / "classes.txt").read_bytes())
    return folder


@pytest.fixture
def server(tmp_path):
    """The dashboard on a free port with its own database; stopped afterwards, with the worker it started."""
    db_url = f"sqlite:///{tmp_path / 'e2e.db'}"
    port = free_port()
    env = {**os.environ, "LORALAB_DB_URL": db_url}
    env.pop("LORALAB_DATA_DIR", None)
    log = open(tmp_path / "streamlit.log", "wb")
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)),
            *("--server.address", "127.0.0.1", "--server.fileWatcherType", "none"),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if urllib.request.urlopen(f"{base}/_stcore/health", timeout=2).status == 200:
                break
        except OSError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "streamlit.log").read_text()
        time.sleep(0.5)
    yield base, db_url, tmp_path
    proc.terminate()
    proc.wait(timeout=20)
    log.close()
    stop_worker(tmp_path)


def stop_worker(tmp_path: Path) -> None:
    """The worker the dashboard started runs in its own session: stop it by the pid in its lock file, once that
    pid is a `core worker` process for this test's database (the file briefly holds other pids)."""
    from core.store.settings import get_settings

    settings = get_settings(f"sqlite:///{tmp_path / 'e2e.db'}")
    if not (settings.data_dir / "worker.log").exists():
        return  # never started

    def worker_pid() -> int | None:
        try:
            pid = int(lock_path(settings).read_text().strip())
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        return pid if b"worker" in command and settings.db_url.encode() in command else None

    try:
        os.kill(wait_until(worker_pid, 60, "the worker's pid", every=0.5), signal.SIGTERM)
    except (AssertionError, ProcessLookupError):
        pass


def runs_in(db_url: str) -> list[Run]:
    with session_factory(db_url)() as s:
        return list(s.query(Run).order_by(Run.id))


def wait_until(predicate, timeout: float, what: str, every: float = 1.0):
    return wait_for(predicate, timeout, every, what)


def wait_for_completed(db_url: str, n: int, timeout: float, what: str) -> None:
    """Until the database holds n runs, all completed; a failed or crashed one ends the wait with its error."""

    def completed():
        runs = runs_in(db_url)
        assert not [r.error for r in runs if r.status in ("failed", "crashed")], f"a run failed: {what}"
        return len(runs) == n and all(r.status == RunStatus.COMPLETED.value for r in runs)

    wait_until(completed, timeout, what, every=2)


def wait_for_script(page) -> None:
    """Wait until Streamlit has finished running the script."""
    from playwright.sync_api import expect

    page.wait_for_timeout(300)
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=120_000)


def upload(page, folder: Path, names: tuple[str, ...]) -> None:
    """Give the Data page's file boxes these files of the folder, in order."""
    from playwright.sync_api import expect

    inputs = page.locator("[data-testid='stFileUploaderDropzoneInput']")
    expect(inputs).to_have_count(4)
    for i, name in enumerate(names):
        for attempt in range(3):  # a file given while the page reruns can be dropped; a person gives it again
            wait_for_script(page)
            inputs.nth(i).set_input_files(folder / name)
            try:
                expect(page.get_by_text(name, exact=True)).to_be_visible(timeout=20_000)
                break
            except AssertionError:
                if attempt == 2:
                    raise
        wait_for_script(page)


def whole_page_shot(page, name: str) -> None:
    """The whole page once the script has run: Streamlit scrolls inside its main area, so the window is made as tall
    as the page, then put back."""
    wait_for_script(page)
    height = page.evaluate("document.querySelector('[data-testid=stMain]').scrollHeight")
    page.set_viewport_size({"width": WIDTH, "height": min(max(height, HEIGHT), 8000)})
    page.wait_for_timeout(500)
    page.screenshot(path=SHOTS / name)
    page.set_viewport_size({"width": WIDTH, "height": HEIGHT})


@contextlib.contextmanager
def browser_page():
    """A page of headless Chromium at the projector's size."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def test_upload_train_a_pair_watch_compare_predict(server):
    from playwright.sync_api import expect, sync_playwright

    base, db_url, tmp = server
    expect.set_options(timeout=60_000)
    csvs = small_csvs(tmp / "csvs")
    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
        page.set_default_timeout(60_000)
        page.add_init_script(RECORD_NAVIGATION)

        def shot(name: str, wait: bool = True) -> None:  # the first screen, then the whole page (Streamlit scrolls
            if wait:  # inside its main area, so the window is made as tall as the page)
                settle()
            page.screenshot(path=SHOTS / name.replace(".png", "-screen.png"))
            height = page.evaluate("document.querySelector('[data-testid=stMain]')?.scrollHeight || 768")
            page.set_viewport_size({"width": WIDTH, "height": min(max(height, HEIGHT), 8000)})
            page.wait_for_timeout(500)
            page.screenshot(path=SHOTS / name)
            page.set_viewport_size({"width": WIDTH, "height": HEIGHT})

        def settle() -> None:
            wait_for_script(page)

        try:
            page.goto(base)  # the first visit since the server started
            expect(page.get_by_text("Next step")).to_be_visible()
            drawn = [json.loads(n) for n in page.evaluate("window.__navs")]
            assert drawn and drawn[0] == STEPS, f"the first navigation drawn was {drawn[:1]}, not the steps"
            assert all("app" not in links for links in drawn), drawn
            shot("1-start.png")

            page.goto(f"{base}/data")
            upload(page, csvs, ("train.csv", "dev.csv", "test.csv", "classes.txt"))
            expect(page.get_by_text("Label distribution per split").first).to_be_visible()
            page.get_by_label("Dataset name", exact=True).fill("news e2e")
            page.get_by_label("Dataset name", exact=True).press("Enter")
            shot("2-data.png")
            page.get_by_role("button", name="Save dataset").click()
            expect(page.get_by_text("Saved 'news e2e'")).to_be_visible()

            page.goto(f"{base}/train")
            expect(page.get_by_text("LoRA trains")).to_be_visible(timeout=120_000)  # parameter counts shown
            page.get_by_text("Details: every setting").click()
            page.get_by_label("Batch size", exact=True).fill("4")
            page.get_by_label("Batch size", exact=True).press("Enter")
            page.get_by_label("Seeds per pair", exact=True).fill("2")  # a comparison of two seeds: four runs
            page.get_by_label("Seeds per pair", exact=True).press("Enter")
            shot("3-train.png")
            page.get_by_role("button", name="Queue a pair: full fine-tuning + LoRA").click()

            expect(page).to_have_url(f"{base}/runs?run=1")
            line = page.locator(".js-plotly-plot .scatterlayer path.js-line").first
            expect(line).to_be_attached(timeout=180_000)
            first = line.get_attribute("d")
            wait_until(lambda: line.get_attribute("d") != first, 120, "the live curve to move", every=0.5)
            shot("4-runs-live.png", wait=False)

            wait_for_completed(db_url, 4, 600, "the two seeds' pairs to complete")
            page.goto(f"{base}/runs")
            expect(page.get_by_text("Open a run")).to_be_visible()
            shot("5-runs-history.png")
            page.goto(f"{base}/runs?run=2")
            expect(page.get_by_text("Test accuracy", exact=True)).to_be_visible()
            shot("6-run-done.png")
            with page.expect_download(timeout=120_000) as exported:  # the model, to take away
                page.get_by_role("button", name="Download the LoRA adapters (.zip)").click()
            exported.value.save_as(tmp / "export.zip")
            with zipfile.ZipFile(tmp / "export.zip") as z:
                names = set(z.namelist())
                card = z.read("run-2-lora/README.md").decode("utf-8")
            assert {"run-2-lora/adapter_model.safetensors", "run-2-lora/adapter_config.json"} <= names, names
            assert "news e2e" in card and "AutoPeftModelForSequenceClassification" in card

            page.goto(f"{base}/compare")
            expect(page.get_by_text("Where they disagree")).to_be_visible()
            # the comparison of both seeds: the difference matrix and the four runs' confusion matrices
            expect(page.locator(".js-plotly-plot .heatmaplayer")).to_have_count(5)
            verdict = page.locator(".st-key-compare_verdict")
            expect(verdict).to_contain_text("95 % interval")
            expect(verdict).to_contain_text("Seeds")  # the group's verdict, each seed's result beside it
            verdict.screenshot(path=SHOTS / "7-verdict.png")
            shot("7-compare.png")

            page.goto(f"{base}/predict")
            page.get_by_label("Text", exact=True).fill("Chelsea win the cup final in extra time")
            page.get_by_role("button", name="Predict").click()
            values = page.get_by_test_id("stMetricValue")
            expect(values).to_have_count(2, timeout=120_000)  # one label per run of the pair
            classes = (csvs / "classes.txt").read_text().split()
            assert all(v in classes for v in values.all_inner_texts()), values.all_inner_texts()
            shaded = page.get_by_test_id("stHtml").filter(has_text="pushed toward")
            expect(shaded).to_have_count(2, timeout=120_000)  # each run's words, shaded under its answer
            shot("8-predict.png")
            page.get_by_label("Text", exact=True).fill("央行宣布下调利率, as Chelsea win the cup")  # Chinese, English
            page.get_by_role("button", name="Predict").click()
            expect(shaded.locator("span[data-score]", has_text="央")).to_have_count(2, timeout=120_000)
            expect(shaded.locator("span[data-score]", has_text="Chelsea")).to_have_count(2)
            shot("8b-explain.png")

            page.get_by_role("tab", name="Label a file").click()  # a whole file, labelled by the worker
            to_label = tmp / "headlines.csv"
            to_label.write_text(
                'id,headline\n1,Chelsea win the cup final\n2,央行宣布下调利率\n3,"Shares fall, again"\n'
            )
            page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(to_label)
            expect(page.get_by_text("3 rows, read as utf-8")).to_be_visible()
            expect(page.get_by_role("combobox", name="Text column")).to_have_value("headline")  # texts, not ids
            page.get_by_role("button", name="Label the file").click()
            with page.expect_download(timeout=180_000) as labelled:
                page.get_by_role("button", name="Download headlines-labelled.csv (3 rows)").click()
            labelled.value.save_as(tmp / "labelled.csv")
            with open(tmp / "labelled.csv", encoding="utf-8-sig", newline="") as f:
                rows = list(csv.DictReader(f))
            assert [(r["id"], r["headline"]) for r in rows] == [
                ("1", "Chelsea win the cup final"),
                ("2", "央行宣布下调利率"),
                ("3", "Shares fall, again"),
            ]
            answers = [r[c] for r in rows for c in r if c.endswith(" label")]
            assert len(answers) == 6 and set(answers) <= set(classes), rows  # the pair of the last seed: 2 runs
            shot("9-label-file.png")
        except BaseException:
            page.screenshot(path=SHOTS / "failure.png")
            print(json.dumps([r.status for r in runs_in(db_url)]), (tmp / "streamlit.log").read_text()[-3000:])
            raise
        finally:
            browser.close()


def test_chinese_titles_on_the_bundled_model_are_said_to_read_poorly_before_queuing(server):
    """The bundled model is English: on Chinese titles, Data and Train say how much of the text it does not know,
    and which models read it, before anything is queued (nothing trains here)."""
    from playwright.sync_api import expect

    base, db_url, tmp = server
    expect.set_options(timeout=60_000)
    SHOTS.mkdir(exist_ok=True)
    with browser_page() as page:
        try:
            page.goto(f"{base}/data")
            upload(page, zh_folder(tmp), ("train.csv", "dev.csv", "test.csv"))
            warning = page.get_by_test_id("stAlertContentWarning").filter(has_text="does not know")
            expect(warning).to_contain_text("all-MiniLM-L6-v2 (bundled, offline) does not know")
            expect(warning).to_contain_text("bert-base-chinese")
            page.get_by_label("Dataset name", exact=True).fill("中文新闻")
            page.get_by_label("Dataset name", exact=True).press("Enter")
            wait_for_script(page)
            page.get_by_role("button", name="Save dataset").click()
            expect(page.get_by_text("Saved '中文新闻'")).to_be_visible()

            page.goto(f"{base}/train")
            expect(page.get_by_text("LoRA trains")).to_be_visible(timeout=120_000)
            warning = page.get_by_test_id("stAlertContentWarning").filter(has_text="does not know")
            expect(warning).to_contain_text("Needs the internet once")
            wait_for_script(page)
            height = page.evaluate("document.querySelector('[data-testid=stMain]').scrollHeight")
            page.set_viewport_size({"width": WIDTH, "height": min(max(height, HEIGHT), 8000)})  # the whole page
            page.wait_for_timeout(500)
            page.screenshot(path=SHOTS / "10-train-chinese-coverage.png")
            expect(page.get_by_role("button", name="Queue a pair: full fine-tuning + LoRA")).to_be_enabled()
            assert runs_in(db_url) == [], "said before queuing: nothing was queued"
        except BaseException:
            page.screenshot(path=SHOTS / "failure.png")
            print((tmp / "streamlit.log").read_text()[-3000:])
            raise


def test_a_small_study_from_train_to_its_chart_on_compare(server):
    """A rank study of three runs (full fine-tuning, LoRA at r = 2 and 8, one seed) on the small news set, stored as
    the Data page stores it: launched from Train after its estimate, followed on Compare, its chart screenshot."""
    from playwright.sync_api import expect

    from core.store.db import open_database
    from core.store.settings import get_settings
    from tests.helpers import store

    base, db_url, tmp = server
    expect.set_options(timeout=60_000)
    SHOTS.mkdir(exist_ok=True)
    settings = get_settings(db_url)
    open_database(db_url)
    store(settings, small_csvs(tmp / "csvs"), "news e2e")
    with browser_page() as page:

        def shot(name: str) -> None:
            whole_page_shot(page, name)

        try:
            page.goto(f"{base}/train")
            expect(page.get_by_text("LoRA trains")).to_be_visible(timeout=120_000)
            page.locator(".st-key-train_what").get_by_text("A study: one setting varied").click()
            wait_for_script(page)
            page.locator(".st-key-train_study_vary").get_by_text("LoRA rank", exact=True).click()
            wait_for_script(page)
            page.get_by_label("LoRA ranks", exact=True).fill("2, 8")
            page.get_by_label("LoRA ranks", exact=True).press("Enter")
            wait_for_script(page)
            page.get_by_label("Seeds per value", exact=True).fill("1")
            page.get_by_label("Seeds per value", exact=True).press("Enter")
            expect(page.get_by_text("The study trains 3 runs, one after another")).to_be_visible()
            shot("11-train-study.png")
            page.get_by_role("button", name="Queue the study").click()
            expect(page.get_by_text("Queued Study #1")).to_be_visible()
            page.get_by_role("link", name="Open study #1 on Compare").click()
            expect(page).to_have_url(f"{base}/compare?study=1")
            expect(page.get_by_text("runs completed").first).to_be_visible()  # its progress while it trains

            wait_for_completed(db_url, 3, 900, "the study's three runs to complete")
            chart = page.locator(".st-key-compare_study_chart")  # the page follows the study: no reload
            expect(chart.locator(".js-plotly-plot")).to_be_visible(timeout=120_000)
            expect(page.get_by_text("All 3 runs completed.")).to_be_visible()
            expect(page.get_by_text("LoRA's best rank, r = ")).to_be_visible()
            wait_for_script(page)
            chart.screenshot(path=SHOTS / "12-study-chart.png")
            shot("12-study.png")
        except BaseException:
            page.screenshot(path=SHOTS / "failure.png")
            print(json.dumps([r.status for r in runs_in(db_url)]), (tmp / "streamlit.log").read_text()[-3000:])
            raise


def test_the_main_path_in_chinese_and_a_switch_to_english_that_keeps_the_text(server):
    """A browser that asks for Chinese (zh-CN) gets the dashboard in Chinese on its first visit: Chinese titles
    uploaded and stored, a pair trained, its verdict on Compare, a Chinese text predicted and explained; then the
    sidebar's switch turns the page English and keeps the typed text. Widgets are found by their keys, not their
    words. Screenshots zh-*.png (the README shows the verdict's)."""
    from playwright.sync_api import expect, sync_playwright

    base, db_url, tmp = server
    expect.set_options(timeout=60_000)
    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT}, locale="zh-CN")
        page.set_default_timeout(60_000)

        def shot(name: str) -> None:
            whole_page_shot(page, name)

        try:
            page.goto(base)
            expect(page.get_by_role("link", name="数据")).to_be_visible()  # the steps, in the browser's language
            expect(page.locator(".st-key-app_language input[type=radio]").nth(1)).to_be_checked(checked=True)
            shot("zh-1-start.png")

            page.goto(f"{base}/data")
            upload(page, zh_folder(tmp), ("train.csv", "dev.csv", "test.csv"))
            page.locator(".st-key-data_name input").first.fill("中文新闻")
            page.locator(".st-key-data_name input").first.press("Enter")
            wait_for_script(page)
            shot("zh-2-data.png")
            page.locator(".st-key-data_save button").first.click()
            expect(page.get_by_text("中文新闻").first).to_be_visible()

            page.goto(f"{base}/train")
            expect(page.locator(".st-key-train_pair button").first).to_be_enabled(timeout=120_000)
            shot("zh-3-train.png")
            page.locator(".st-key-train_pair button").first.click()
            expect(page).to_have_url(f"{base}/runs?run=1")

            wait_for_completed(db_url, 2, 600, "the pair to complete")
            page.goto(f"{base}/runs?run=2")
            expect(page.get_by_text("测试集准确率").first).to_be_visible()
            shot("zh-4-runs.png")

            page.goto(f"{base}/compare")
            verdict = page.locator(".st-key-compare_verdict")
            expect(verdict).to_contain_text("95% 置信区间")
            verdict.screenshot(path=SHOTS / "zh-5-verdict.png")
            shot("zh-5-compare.png")

            page.goto(f"{base}/predict")
            page.locator(".st-key-predict_text textarea").first.fill("央行宣布下调利率")
            page.locator(".st-key-predict_button button").first.click()
            expect(page.get_by_test_id("stMetricValue")).to_have_count(2, timeout=120_000)
            shaded = page.get_by_test_id("stHtml").filter(has=page.locator("span[data-score]"))
            expect(shaded).to_have_count(2, timeout=120_000)
            expect(shaded.locator("span[data-score]", has_text="央")).to_have_count(2)
            shot("zh-6-predict.png")

            page.get_by_test_id("stExpandSidebarButton").click()  # the switch, folded away at the top left
            page.locator(".st-key-app_language").get_by_text("English").click()
            expect(page.locator(".st-key-predict_button button").first).to_have_text("Predict")
            expect(page.locator(".st-key-predict_text textarea").first).to_have_value("央行宣布下调利率")
            expect(page.get_by_role("link", name="Data")).to_be_visible()
            shot("zh-7-switched-to-english.png")
        except BaseException:
            page.screenshot(path=SHOTS / "failure.png")
            print(json.dumps([r.status for r in runs_in(db_url)]), (tmp / "streamlit.log").read_text()[-3000:])
            raise
        finally:
            browser.close()
