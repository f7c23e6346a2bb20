"""Helpers the engine, fault and cluster tests share: store a dataset, start a worker, read a run, wait."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from core.data import checking, datasets, reading
from core.store.db import Metric, Run, session_factory

ROOT = Path(__file__).resolve().parent.parent

ZH = {  # Chinese news titles: sport, finance, technology
    "体育": [
        "国足主帅谈世界杯预选赛备战情况",
        "女排三比零横扫对手晋级决赛",
        "马拉松赛事吸引三万名跑者参加",
        "篮球联赛季后赛首轮今晚开打",
        "乒乓球队公布奥运会参赛名单",
        "中超联赛第十轮比赛结果汇总",
        "游泳世锦赛我国选手再夺金牌",
        "羽毛球公开赛男单决赛精彩纷呈",
        "足球协会宣布新赛季改革方案",
        "冬奥会滑雪项目测试赛顺利举行",
        "网球名将因伤退出本届公开赛",
        "田径运动员打破全国纪录",
    ],
    "财经": [
        "央行宣布下调存款准备金率",
        "股市三大指数集体收涨",
        "房地产市场成交量环比回升",
        "人民币汇率中间价小幅上调",
        "多家银行下调房贷利率",
        "上半年国内生产总值同比增长",
        "原油价格连续三周下跌",
        "基金公司发行规模创新高",
        "消费者物价指数保持温和上涨",
        "出口贸易额超出市场预期",
        "保险行业保费收入稳步增长",
        "债券市场收益率继续走低",
    ],
    "科技": [
        "国产芯片研发取得重大突破",
        "新款智能手机发布售价上涨",
        "人工智能大模型开放公众试用",
        "火箭成功发射三颗遥感卫星",
        "量子计算机实现新的里程碑",
        "电动汽车电池续航再创纪录",
        "互联网公司发布开源操作系统",
        "科学家发现新型超导材料",
        "无人驾驶出租车开始载客测试",
        "第五代移动通信基站建设提速",
        "机器人在医院承担配送工作",
        "云计算服务价格全面下调",
    ],
}


def zh_folder(tmp_path: Path) -> Path:
    """train / dev / test CSVs of the Chinese titles (8 / 2 / 2 of each class), in the seed layout, UTF-8."""
    folder = tmp_path / "zh"
    folder.mkdir()
    for split, rows in (("train", slice(0, 8)), ("dev", slice(8, 10)), ("test", slice(10, 12))):
        with open(folder / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([("0", "1"), *((t, label) for label, ts in ZH.items() for t in ts[rows])])
    return folder


def store(settings, folder, name="tiny"):
    """Check and store the train/dev/test CSVs of a folder, as the Data page does."""
    check = checking.check_dataset(reading.files_from_folder(folder), settings)
    assert check.ok, check.errors
    with session_factory(settings.db_url)() as s:
        return datasets.save_dataset(s, settings, check, name)


def save_bert(folder, tokenizer, hidden=32, layers=2, heads=2, intermediate=64) -> str:
    """A BERT classifier with random weights and this tokenizer, saved as save_pretrained saves a downloaded one, so
    that the real loading code reads it."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=128,
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def wait_for(predicate, timeout=90.0, every=0.2, what="a condition"):
    """Poll until `predicate()` is truthy and return its value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def get_run(settings, run_id) -> Run:
    with session_factory(settings.db_url, read_only=True)() as s:
        return s.get(Run, run_id)


def metric_count(settings, run_id) -> int:
    with session_factory(settings.db_url, read_only=True)() as s:
        return s.scalar(select(func.count(Metric.id)).where(Metric.run_id == run_id))


def metric_rows(settings, run_id) -> list[tuple[str, int, float]]:
    """(name, step, value) of every logged value of a run, in logging order."""
    with session_factory(settings.db_url, read_only=True)() as s:
        rows = s.execute(
            select(Metric.name, Metric.step, Metric.value).where(Metric.run_id == run_id).order_by(Metric.id)
        )
        return [tuple(r) for r in rows]


def core_command(settings, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m core ARGS --db URL`, as a user types it, on the test's database and data folder."""
    return subprocess.run(
        [sys.executable, "-m", "core", *args, "--db", settings.db_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "LORALAB_DATA_DIR": str(settings.data_dir)},
    )


def start_worker(settings, env: dict | None = None, output=subprocess.DEVNULL, **popen) -> subprocess.Popen:
    """A real worker process (`python -m core worker`) for the settings' database and data folder."""
    return subprocess.Popen(
        [sys.executable, "-m", "core", "worker", "--db", settings.db_url],
        cwd=ROOT,
        env={**os.environ, "LORALAB_DATA_DIR": str(settings.data_dir), **(env or {})},
        stdout=output,
        stderr=subprocess.STDOUT if output is subprocess.PIPE else subprocess.DEVNULL,
        text=True,
        **popen,
    )


def train_now(settings, dataset, model_source: str, method: str, **config) -> int:
    """Record a run and train it in this process (no worker, no child process): a finished run to use, fast."""
    from core.training.config import TrainConfig
    from core.training.train import train_run

    with session_factory(settings.db_url)() as s:
        run = Run(
            dataset_id=dataset.id,
            dataset_name=dataset.name,
            method=method,
            model_source=model_source,
            config=TrainConfig(method=method, **config).to_dict(),
        )
        s.add(run)
        s.commit()
        run_id = run.id
    assert train_run(settings, run_id).value == "completed", get_run(settings, run_id).error
    return run_id
