"""The command line in Chinese (LANG=zh_CN.UTF-8): refusals, `status` and settings that cannot be used come out in
Chinese with their numbers and names in place; `--json` prints the same object in every language."""

from __future__ import annotations

import json

import pytest

from core import i18n
from core.cli import main
from core.store.db import Run, Study, session_factory
from core.training.config import TrainConfig
from tests.english import words_left
from tests.helpers import store

LANGUAGE_VARIABLES = ("LORALAB_LANGUAGE", "LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")


@pytest.fixture(autouse=True)
def no_language_set(monkeypatch):
    for name in LANGUAGE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    yield
    i18n.set_language(i18n.SOURCE)  # main() sets this thread's language: leave the next test in English


def command(monkeypatch, capsys, lang: str, *args: str) -> tuple[int, str, str]:
    monkeypatch.setenv("LANG", lang)
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def english_in(text: str, kept: set[str] = frozenset()) -> list[str]:
    return words_left(text, set(kept))


def test_a_refused_command_says_why_in_chinese_with_its_numbers_and_names(settings, monkeypatch, capsys):
    db = ["--db", settings.db_url]
    assert command(monkeypatch, capsys, "zh_CN.UTF-8", "status", "999", *db) == (2, "", "错误：没有运行 999。\n")
    assert command(monkeypatch, capsys, "en_US.UTF-8", "status", "999", *db) == (
        2,
        "",
        "error: There is no run 999.\n",
    )
    code, _out, err = command(monkeypatch, capsys, "zh_CN.UTF-8", "compare", "3", "x7", *db)
    assert code == 2 and err == "错误：编号是整数；收到的是 3 x7。\n"
    code, _out, err = command(monkeypatch, capsys, "zh_CN.UTF-8", "submit", "--seeds", "2", *db)
    assert code == 2 and err.startswith("错误：--seeds 用于实验研究：请加上 --study"), err
    with pytest.raises(SystemExit):  # argparse's own usage line stays English (Python's catalogue); ours is Chinese
        command(monkeypatch, capsys, "zh_CN.UTF-8", "cancel", "abc", *db)
    assert "“abc”不是运行编号（应为整数，例如 3）" in capsys.readouterr().err


def _finished_run(settings, csv_folder) -> int:
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        run = Run(
            dataset_id=dataset.id,
            dataset_name=dataset.name,
            method="lora",
            model_source="tiny-bert",
            config=TrainConfig(method="lora", seed=7).to_dict(),
            status="completed",
            train_seconds=12.34,
            samples_per_second=56.7,
            trainable_params=1234,
            total_params=1234567,
            test_metrics={"accuracy": 0.8125, "precision_weighted": 0.8, "recall_weighted": 0.81, "f1_macro": 0.79},
        )
        s.add(run)
        s.commit()
        return run.id


def test_status_speaks_chinese_and_its_json_is_the_same_object_in_every_language(
    settings, csv_folder, monkeypatch, capsys
):
    run_id = str(_finished_run(settings, csv_folder))
    db = ["--db", settings.db_url]
    code, out, err = command(monkeypatch, capsys, "zh_CN.UTF-8", "status", run_id, *db)
    assert code == 0 and err == ""
    assert out.splitlines() == [
        f"运行 {run_id}：已完成（lora，tiny-bert）",
        "  测试集准确率 0.8125  精确率（加权） 0.8000  召回率（加权） 0.8100  宏平均 F1 0.7900",
        "  12.3 秒，每秒 56.7 个样本，训练了 1,234,567 个参数中的 1,234 个",
    ]
    code, english, _err = command(monkeypatch, capsys, "en_US.UTF-8", "status", run_id, *db)
    assert english.splitlines()[0] == f"run {run_id}: completed (lora, tiny-bert)"
    assert english.splitlines()[2] == "  12.3 s, 56.7 samples/s, 1,234 of 1,234,567 parameters trained"

    as_json = {lang: command(monkeypatch, capsys, lang, "status", run_id, "--json", *db)[1] for lang in ("zh", "en")}
    assert as_json["zh"] == as_json["en"] and json.loads(as_json["zh"])["status"] == "completed"


def test_a_studys_status_lists_its_runs_in_chinese(settings, csv_folder, monkeypatch, capsys):
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        study = Study(
            vary="lr",
            dataset_id=dataset.id,
            dataset_name=dataset.name,
            model_source="m",
            config=TrainConfig(seed=7).to_dict(),
            grid={"full": [5e-5], "lora": [1e-3], "default": {"full": 5e-5, "lora": 1e-3}},
            seeds=2,
            first_seed=7,
        )
        s.add(study)
        s.flush()
        for method, rate, status in (("full", 5e-5, "completed"), ("lora", 1e-3, "queued")):
            s.add(
                Run(
                    dataset_id=dataset.id,
                    dataset_name=dataset.name,
                    method=method,
                    model_source="m",
                    config=TrainConfig(method=method, learning_rate=rate, seed=7).to_dict(),
                    status=status,
                    study_id=study.id,
                    study_role="default",
                    test_metrics={"accuracy": 0.75} if status == "completed" else None,
                )
            )
        s.commit()
        study_id = str(study.id)
    db = ["--db", settings.db_url]
    code, out, _err = command(monkeypatch, capsys, "zh_CN.UTF-8", "status", "--study", study_id, *db)
    assert code == 0
    assert "计划约 6 次运行，已记录 2 次：已完成 1 次、排队中 1 次" in out, out
    assert "：已完成（full、学习率 5e-05、随机种子 7），测试集准确率 75.0%" in out, out
    assert "：排队中（lora、学习率 0.001、随机种子 7）" in out, out
    assert english_in(out, {"full", "lora", dataset.name}) == [], out
    as_json = {
        lang: command(monkeypatch, capsys, lang, "status", "--study", study_id, "--json", *db)[1]
        for lang in ("zh", "en")
    }
    assert as_json["zh"] == as_json["en"]


def test_a_setting_that_cannot_be_used_is_named_in_chinese(settings, monkeypatch, capsys):
    monkeypatch.setenv("LORALAB_MAX_ROWS", "-5")
    code, _out, err = command(monkeypatch, capsys, "zh_CN.UTF-8", "status", "1", "--db", settings.db_url)
    assert code == 2
    assert err == "错误：LORALAB_MAX_ROWS 的值是“-5”：它必须是大于 0 的整数，或者不设置（1e+06）。\n"
    monkeypatch.setenv("LORALAB_MAX_ROWS", "1000")
    monkeypatch.setenv("LORALAB_DEVICE_MEMORY_MB", "16GB")
    code, _out, err = command(monkeypatch, capsys, "zh_CN.UTF-8", "status", "1", "--db", settings.db_url)
    assert err == "错误：LORALAB_DEVICE_MEMORY_MB 的值是“16GB”：它必须是大于 0 的数，或者不设置（自动测量）。\n"
    code, _out, err = command(monkeypatch, capsys, "zh_CN.UTF-8", "status", "1", "--db", "runs.db")
    assert err.startswith("错误：“runs.db”不是数据库 URL（--db 或 LORALAB_DB_URL）。")


def test_lists_of_study_values_are_refused_in_chinese(monkeypatch):
    from core.jobs.runs import ConfigError
    from core.jobs.studies import values_from_text

    with i18n.speaking("zh"), pytest.raises(ConfigError) as refused:
        values_from_text("100, abc, 1x")
    assert refused.value.problems[0].startswith("'abc'、'1x' 不是数字：请给出用逗号分隔的数字")
