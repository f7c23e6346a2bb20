"""One AppTest per page, widgets found by key, on a temporary database; runs are inserted as rows (no training),
except for Predict, which loads a really trained tiny model."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.data import checking, datasets, reading
from core.jobs.runs import create_comparison, create_run
from core.results import tables
from core.store.db import Dataset, Metric, Prediction, Run, RunStatus, session_factory, utcnow
from core.training import evaluate, models
from core.training.artifacts import CHECKPOINT_STATE, artifact_dir, checkpoints_dir
from core.training.config import TrainConfig
from core.training.train import train_run
from tests.conftest import make_rows, write_csv

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["home", "data", "train", "runs", "compare", "predict"]


@pytest.fixture(autouse=True)
def no_worker(monkeypatch):
    """Pages queue runs, but no background worker is started from a test."""
    monkeypatch.setattr("core.jobs.worker.ensure_worker", lambda settings: False)


def open_page(page: str, **query) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90).run()
    if page != "home":
        at.switch_page(f"pages/{page}.py")
    at.query_params.update(query)
    return at.run()


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def store(settings, folder: Path, name="tiny", class_names=None) -> Dataset:
    check = checking.check_dataset(reading.files_from_folder(folder), settings, class_names=class_names)
    assert check.ok, check.errors
    with session_factory(settings.db_url)() as s:
        return datasets.save_dataset(s, settings, check, name)


def upload(at: AppTest, folder: Path, names=("train", "dev", "test")) -> AppTest:
    for split in names:
        path = folder / f"{split}.csv"
        at.file_uploader(key=f"data_{split}_file").set_value((path.name, path.read_bytes(), "text/csv"))
    return at.run()


def dataset_id(settings, name: str) -> int:
    with session_factory(settings.db_url)() as s:
        return next(d.id for d in tables.list_datasets(s) if d.name == name)


def finish(s, run: Run, status: RunStatus, **values) -> None:
    """Give a run the progress, curves and other values that training would have written."""
    run.status, run.total_steps, run.step = status.value, 40, 40 if status == RunStatus.COMPLETED else 10
    run.started_at, run.heartbeat_at = utcnow() - timedelta(seconds=30), utcnow()
    for step in range(2, run.step + 1, 2):
        s.add(Metric(run_id=run.id, step=step, epoch=step / 20, name="train_loss", value=1.2 - step / 50))
        if step % 10 == 0:
            s.add(Metric(run_id=run.id, step=step, epoch=step / 20, name="eval_loss", value=1.1 - step / 60))
            s.add(Metric(run_id=run.id, step=step, epoch=step / 20, name="eval_accuracy", value=0.3 + step / 80))
    for key, value in values.items():
        setattr(run, key, value)
    s.commit()


@pytest.fixture
def populated(settings, csv_folder):
    """A dataset and runs in every state: queued, running, a completed pair, failed, cancelled, crashed."""
    dataset = store(settings, csv_folder)
    test = datasets.load_split(settings, dataset, "test")
    ids = {}
    with session_factory(settings.db_url)() as s:
        dataset = s.get(Dataset, dataset.id)
        config = TrainConfig(epochs=2, batch_size=8)
        _, (full, lora) = create_comparison(s, dataset, models.BUNDLED, config)
        for run, wrong_every in ((full, 4), (lora, 3)):
            preds = [(y + 1) % 3 if i % wrong_every == 0 else y for i, y in enumerate(test["label"])]
            probs = [[0.8 if c == p else 0.1 for c in range(3)] for p in preds]
            metrics = evaluate.test_metrics(test["label"].to_numpy(), np.array(probs), dataset.classes)
            s.add_all(
                Prediction(run_id=run.id, idx=i, text=t, true_label=int(y), pred_label=p, probs=pr)
                for i, (t, y, p, pr) in enumerate(zip(test["text"], test["label"], preds, probs))
            )
            finish(
                s,
                run,
                RunStatus.COMPLETED,
                test_metrics=metrics,
                train_seconds=12.5,
                samples_per_second=30.0,
                trainable_params=22_000_000 if run.method == "full" else 110_000,
                total_params=22_000_000,
                peak_memory_mb=900.0,
                artifact_bytes=90_000_000 if run.method == "full" else 500_000,
                finished_at=utcnow(),
            )
            ids[f"completed_{run.method}"] = run.id
        for status, error in (
            (RunStatus.RUNNING, None),
            (RunStatus.FAILED, "Out of memory: try batch size 16 or LoRA."),
            (RunStatus.CANCELLED, None),
            (RunStatus.CRASHED, "The training process was killed (SIGKILL) before it finished."),
        ):
            run = create_run(s, dataset, models.BUNDLED, config)
            finish(s, run, status, error=error)
            ids[status.value] = run.id
        ids["queued"] = create_run(s, dataset, models.BUNDLED, config).id
    return ids


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_an_empty_database(settings, page):
    at = open_page(page)
    assert not at.exception
    assert at.info, "an empty page says what to do next"


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_with_runs_in_every_state(settings, populated, page):
    at = open_page(page)
    assert not at.exception
    assert not at.error
    for kind in ("button", "selectbox", "multiselect", "radio", "text_input", "text_area", "number_input", "toggle"):
        for widget in getattr(at, kind):
            assert widget.help and widget.key.startswith(f"{page}_"), f"{kind} {widget.key} needs help and a page key"


@pytest.mark.parametrize("state", ["queued", "running", "completed_full", "failed", "cancelled", "crashed"])
def test_every_run_state_has_a_view(settings, populated, state):
    at = open_page("runs", run=str(populated[state]))
    assert not at.exception
    assert f"#{populated[state]} " in texts(at.subheader)
    if state in ("failed", "crashed"):
        assert ("Out of memory" if state == "failed" else "SIGKILL") in texts(at.error)


@pytest.mark.parametrize("query", [{"run": "999"}, {"run": "abc"}, {"run": ""}])
def test_a_missing_run_in_the_url_is_a_plain_message(settings, populated, query):
    at = open_page("runs", **query)
    assert not at.exception
    assert "There is no run" in texts(at.error)
    assert at.dataframe, "the history is shown under the message"


def test_home_shows_the_next_step_and_stores_the_demo_set(settings):
    at = open_page("home")
    assert "Add a dataset" in texts(at.info)
    at.button(key="home_add_demo").click().run()
    assert not at.exception
    assert "Train" in texts(at.info), "with a dataset stored, the next step is training"
    with session_factory(settings.db_url)() as s:
        assert [d.name for d in tables.list_datasets(s)] == [datasets.DEMO_NAME]


def test_data_upload_preview_distribution_save_and_delete(settings, csv_folder):
    at = upload(open_page("data"), csv_folder)
    assert not at.exception and not at.error
    assert at.selectbox(key="data_text_column").value == "0", "the seed layout is detected"
    assert at.selectbox(key="data_label_column").value == "1"
    assert len(at.tabs) == 3 and len(at.dataframe) >= 3, "a preview of each split"
    chart = at.get("plotly_chart")[0].proto.spec
    assert "Label distribution" in chart and '"train"' in chart and '"test"' in chart
    at.text_input(key="data_name").set_value("news sample").run()
    at.button(key="data_save").click().run()
    assert "Saved 'news sample'" in texts(at.success)
    assert "news sample" in at.dataframe[-1].value["name"].tolist()

    at.button(key="data_save").click().run()
    assert "already stored as 'news sample'" in texts(at.info), "the same data is not stored twice"

    at.selectbox(key="data_delete_choice").set_value(dataset_id(settings, "news sample")).run()
    at.button(key="data_delete").click().run()
    at.button(key="data_delete_yes").click().run()  # it asks first
    assert not at.exception
    assert "Deleted 'news sample'" in texts(at.success)
    assert "No dataset is stored yet." in texts(at.info)


def test_data_lists_every_problem_before_saving(settings, tmp_path):
    write_csv(tmp_path / "train.csv", [("good text", "a"), ("", "b"), ("other", "a"), ("more", "")])
    write_csv(tmp_path / "dev.csv", [("x", "a"), ("y", "zzz")])
    write_csv(tmp_path / "test.csv", [("x", "a"), ("y", "b")])
    at = upload(open_page("data"), tmp_path)
    assert not at.exception
    errors = texts(at.error)
    assert "text is empty" in errors and "label is missing" in errors
    assert "data_save" not in [b.key for b in at.button], "nothing can be saved until the problems are fixed"

    at = upload(open_page("data"), tmp_path, names=("train",))
    assert "No dev file was given" in texts(at.error) and "No test file was given" in texts(at.error)


def test_data_column_picker_and_a_chinese_csv(settings, tmp_path):
    for split, seed in (("train", 1), ("dev", 2), ("test", 3)):
        rows = [(i, t, ["体育", "财经", "科技"][y]) for i, (t, y) in enumerate(make_rows(30, seed, chinese=True))]
        write_csv(tmp_path / f"{split}.csv", rows, header=("编号", "标题", "类别"), encoding="gb18030")
    at = upload(open_page("data"), tmp_path)
    assert not at.exception
    assert at.selectbox(key="data_text_column").value == "编号", "no known names: the first two columns are guessed"
    at.selectbox(key="data_text_column").set_value("标题").run()
    at.selectbox(key="data_label_column").set_value("类别").run()
    assert not at.error
    preview = at.dataframe[0].value
    assert preview["标题"].str.contains("新闻").all(), "Chinese text is shown as written, not garbled"
    assert "Chinese (GBK)" in texts(at.caption)
    at.button(key="data_save").click().run()
    with session_factory(settings.db_url)() as s:
        dataset = tables.list_datasets(s)[0]
    assert sorted(dataset.classes) == sorted(["体育", "财经", "科技"])


def test_train_shows_parameter_counts_refuses_bad_settings_and_queues(settings, csv_folder, tiny_model):
    store(settings, csv_folder)
    at = open_page("train")
    at.radio(key="train_model_kind").set_value(at.radio(key="train_model_kind").options[2]).run()
    at.text_input(key="train_model_name").set_value(tiny_model).run()
    assert not at.exception and not at.error
    full, lora = at.metric
    assert full.label.startswith("Full") and lora.label.startswith("LoRA")
    trainable = [int(m.value.split()[0].replace(",", "")) for m in (full, lora)]
    assert 0 < trainable[1] < trainable[0], "LoRA trains fewer weights, shown before launch"

    at.number_input(key="train_lr_lora").set_value(5.0).run()
    assert "LoRA: Learning rate must be" in texts(at.error)
    assert at.button(key="train_pair").disabled
    at.radio(key="train_method").set_value("full").run()
    assert not at.button(key="train_single").disabled, "a single full run is still fine"

    at.radio(key="train_preset").set_value("as in the published experiment").run()
    assert at.number_input(key="train_epochs").value == 5, "a preset fills in the details"
    assert at.number_input(key="train_lr_lora").value < 1, "and resets the learning rates to its own"
    at.number_input(key="train_lr_lora").set_value(3e-4).run()
    at.number_input(key="train_epochs").set_value(1.0).run()
    at.number_input(key="train_repeats").set_value(1).run()  # the preset asks for 3 seeds; one pair here
    at.button(key="train_pair").click().run()
    assert not at.exception
    with session_factory(settings.db_url)() as s:
        queued = tables.all_runs(s)
    assert len(queued) == 2 and queued[0].pair_id == queued[1].pair_id
    by_method = {r.method: r for r in queued}
    assert by_method["lora"].config["learning_rate"] == pytest.approx(3e-4)
    assert by_method["full"].config["epochs"] == by_method["lora"].config["epochs"] == 1
    assert by_method["full"].config["seed"] == by_method["lora"].config["seed"]
    assert at.query_params["run"] == str(by_method["full"].id), "launching opens the run's live view"


def test_train_names_a_missing_model_folder(settings, csv_folder, tmp_path):
    store(settings, csv_folder)
    at = open_page("train")
    at.radio(key="train_model_kind").set_value(at.radio(key="train_model_kind").options[2]).run()
    at.text_input(key="train_model_name").set_value(str(tmp_path / "nowhere")).run()
    assert not at.exception
    assert "does not exist" in texts(at.error)
    assert at.button(key="train_pair").disabled and at.button(key="train_single").disabled


def test_runs_history_filter_open_and_cancel(settings, populated):
    at = open_page("runs")
    table = at.dataframe[0].value
    assert len(table) == 7 and set(table["status"]) == {s.value for s in RunStatus}
    at.multiselect(key="runs_status").set_value(["failed", "crashed"]).run()
    assert set(at.dataframe[0].value["status"]) == {"failed", "crashed"}

    at.selectbox(key="runs_open").set_value(populated["running"]).run()
    assert at.query_params["run"] == str(populated["running"]), "the open run is in the URL"
    assert "Step 10 of 40" in at.get("progress")[0].proto.text
    assert at.get("plotly_chart"), "live curves"
    at.button(key="runs_cancel").click().run()
    at.button(key="runs_cancel_yes").click().run()  # it asks first
    with session_factory(settings.db_url)() as s:
        assert s.get(Run, populated["running"]).cancel_requested

    at.button(key="runs_back").click().run()
    assert "run" not in at.query_params and at.dataframe


def test_runs_deletes_a_run_or_a_whole_comparison_with_its_files_after_one_question(settings, populated):
    with session_factory(settings.db_url)() as s:
        crashed, group_id = s.get(Run, populated["crashed"]), s.get(Run, populated["completed_full"]).group_id
    checkpoint = checkpoints_dir(settings, crashed) / "checkpoint-10"
    checkpoint.mkdir(parents=True)
    (checkpoint / "optimizer.pt").write_bytes(b"o" * 3 * 2**20)  # the optimizer's state: what a checkpoint weighs
    at = open_page("runs")
    assert "The history takes 3." in texts(at.caption) and "7 runs 3.0 MB" in texts(at.caption)

    at.selectbox(key="runs_delete_choice").set_value(f"run-{populated['running']}").run()
    assert "is running: cancel it first" in texts(at.warning)
    assert "runs_delete" not in [b.key for b in at.button], "a run in training cannot be deleted"

    at.selectbox(key="runs_delete_choice").set_value(f"run-{crashed.id}").run()
    at.button(key="runs_delete").click().run()
    assert f"Delete run #{crashed.id} for good?" in texts(at.warning) and "frees 3.0 MB" in texts(at.warning)
    at.button(key="runs_delete_no").click().run()  # it asks first; No keeps it
    assert checkpoint.is_dir()
    at.button(key="runs_delete").click().run()
    at.button(key="runs_delete_yes").click().run()
    assert not at.exception
    assert f"Deleted run #{crashed.id} with its files; 3.0 MB freed." in texts(at.success)
    assert not checkpoints_dir(settings, crashed).parent.exists()
    assert len(at.dataframe[0].value) == 6

    at.selectbox(key="runs_delete_choice").set_value(f"group-{group_id}").run()
    at.button(key="runs_delete").click().run()
    assert "Delete run #" in texts(at.warning)
    at.button(key="runs_delete_yes").click().run()
    assert not at.exception and "Deleted runs #" in texts(at.success)
    with session_factory(settings.db_url)() as s:
        left = {r.id for r in tables.all_runs(s)}
    assert left.isdisjoint({crashed.id, populated["completed_full"], populated["completed_lora"]}) and len(left) == 4
    assert "runs_comparisons" not in [d.key for d in at.dataframe], "the comparison went with its runs"


def test_a_crashed_run_with_a_checkpoint_resumes_from_its_page(settings, populated):
    with session_factory(settings.db_url)() as s:
        crashed = s.get(Run, populated["crashed"])
    checkpoint = checkpoints_dir(settings, crashed) / "checkpoint-10"
    checkpoint.mkdir(parents=True)
    # What marks a checkpoint as complete, and the run that wrote it.
    (checkpoint / CHECKPOINT_STATE).write_text(json.dumps({"run_uid": crashed.uid}))
    at = open_page("runs", run=str(populated["crashed"]))
    assert at.button(key="runs_resume").label == "Resume from step 10"
    at.button(key="runs_resume").click().run()
    assert not at.exception
    with session_factory(settings.db_url)() as s:
        run = s.get(Run, populated["crashed"])
        assert (run.status, run.error, run.finished_at) == ("queued", None, None)
    assert "Waiting its turn" in texts(at.info)
    for other in ("failed", "cancelled", "completed_full"):  # no checkpoint, or nothing left to do
        assert "runs_resume" not in [b.key for b in open_page("runs", run=str(populated[other])).button]


def test_a_run_whose_training_finished_resumes_with_test_scoring_from_its_page(settings, populated):
    with session_factory(settings.db_url)() as s:
        failed, running = s.get(Run, populated["failed"]), s.get(Run, populated["running"])
        model = artifact_dir(settings, failed)
        model.mkdir(parents=True)
        (model / "lora_lab.json").write_text(json.dumps({"run_uid": "another run"}))
        # Training finished and recorded its model; scoring failed (or, for the running one, goes on).
        failed.artifact_path, failed.step = str(model.relative_to(settings.data_dir)), 40
        running.step = 40
        s.commit()
    at = open_page("runs", run=str(populated["running"]))
    assert at.get("progress")[0].proto.text.endswith("Step 40 of 40 · training finished, scoring the test set")
    assert "runs_resume" not in [b.key for b in open_page("runs", run=str(populated["failed"])).button]
    (model / "lora_lab.json").write_text(json.dumps({"run_uid": failed.uid}))  # its own model, not another run's
    at = open_page("runs", run=str(populated["failed"]))
    assert at.button(key="runs_resume").label == "Resume with test scoring"
    at.button(key="runs_resume").click().run()
    assert not at.exception
    with session_factory(settings.db_url)() as s:
        assert s.get(Run, populated["failed"]).status == "queued"


def test_runs_view_shows_the_end_of_a_run(settings, populated):
    at = open_page("runs", run=str(populated["completed_lora"]))
    assert [m.label for m in at.metric][:2] == ["Test accuracy", "Test macro-F1"]
    assert any("Compare the pair" in link.proto.label for link in at.get("page_link"))


def test_predict_chinese_text_with_a_trained_run(settings, tmp_path, tiny_model):
    folder = tmp_path / "zh"
    folder.mkdir()
    for split, n, seed in (("train", 60, 1), ("dev", 12, 2), ("test", 12, 3)):
        write_csv(folder / f"{split}.csv", make_rows(n, seed, chinese=True))
    dataset = store(settings, folder, "中文新闻", class_names=["体育", "财经", "科技"])
    with session_factory(settings.db_url)() as s:
        config = TrainConfig(method="lora", epochs=2, batch_size=16, evals_per_epoch=1, max_length=32)
        run = create_run(s, s.get(Dataset, dataset.id), tiny_model, config)
    assert train_run(settings, run.id) == RunStatus.COMPLETED

    at = open_page("predict")
    assert at.multiselect(key="predict_runs").value == [run.id], "the latest finished run is chosen"
    at.text_area(key="predict_text").set_value("足球新闻：球队 比赛 goal").run()
    at.button(key="predict_button").click().run()
    assert not at.exception and not at.error
    (metric,) = at.metric
    assert metric.value in {"体育", "财经", "科技"}
    bars = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]
    assert list(bars["y"]) == ["体育", "财经", "科技"], "class names in the probability chart"


def test_compare_ignores_unknown_runs_in_the_url_and_predict_names_a_missing_model(settings, populated):
    at = open_page("compare", runs="999,abc")
    assert not at.exception
    assert at.multiselect(key="compare_runs").value == [populated["completed_full"], populated["completed_lora"]]

    at = open_page("predict")
    at.text_area(key="predict_text").set_value("a new phone chip").run()
    assert not at.exception
    assert len(at.error) == 2, "each run without model files says so in plain words, the page goes on"


def test_a_classroom_password_guards_every_page(settings):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    at.secrets["password"] = "lora-class-7"
    at.run()
    assert not at.exception
    assert [t.key for t in at.text_input] == ["app_password"]
    assert not at.button and not at.file_uploader  # no page opens before the password
    with pytest.raises(ValueError, match=r"Known pages: \['Sign in'\]"):  # no other page is even registered
        at.switch_page("pages/data.py")
    at.text_input(key="app_password").input("wrong").run()
    assert "not right" in texts(at.error)
    at.text_input(key="app_password").input("lora-class-7").run()
    assert not at.exception and "app_password" not in [t.key for t in at.text_input]
    at.switch_page("pages/data.py").run()  # every page is open now
    assert not at.exception and at.file_uploader


def test_the_screen_calls_the_background_process_the_worker_as_the_command_line_does():
    """One name per concept: `python -m core worker` is "the background worker" on screen too, never "the trainer"
    (the Hugging Face Trainer is another thing). Every string the pages, ui.py and app.py can show is read."""
    import ast

    shown = []
    for path in [ROOT / "app.py", ROOT / "ui.py", *sorted((ROOT / "pages").glob("*.py"))]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        shown += [
            (path.name, node.value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
        ]
    assert not [(name, text) for name, text in shown if "trainer" in text.lower()]
    assert any("background worker" in text for _, text in shown)


def test_the_runs_page_walks_the_data_folder_once_in_a_while_and_after_a_delete(settings, populated, monkeypatch):
    from core.store import storage

    walks = []
    real = storage.disk_use
    monkeypatch.setattr(storage, "disk_use", lambda s, settings: walks.append(1) or real(s, settings))
    at = open_page("runs")
    at.run()
    assert not at.exception and len(walks) == 1, "a rerun within seconds reads the cached sizes"
    with session_factory(settings.db_url)() as s:
        crashed = s.get(Run, populated["crashed"])
    at.selectbox(key="runs_delete_choice").set_value(f"run-{crashed.id}").run()
    at.button(key="runs_delete").click().run()
    at.button(key="runs_delete_yes").click().run()
    assert not at.exception and len(walks) == 2, "a delete frees disk: the sizes are read anew"
    assert "6 runs" in texts(at.caption)
