"""How fast, and with how much memory, a training CSV is read and checked (the Data page's and `core submit`'s
path) and a file to label is read: synthetic Chinese news titles, 20,000 / 200,000 / 1,000,000 rows.

Each size runs in a fresh process, so its peak memory is its own. The process imports, loads the tokenizer (the
check uses it to warn about long texts) and first reads a 20-row file the same way: what that first use costs
(modules pandas and Arrow load on first use, their memory pools) is the same for any file and is shown apart. Peak
RSS minus the RSS after that is what reading the file costs.

    .venv/bin/python bench/read_bench.py [--rows 20000 200000 1000000]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's core, whichever is installed
HEADS = "股市 央行 球队 手机 电影 高考 楼市 基金 芯片 比赛 新车 游戏 明星 大学 房价 利率 足球 银行 软件 市场".split()
TAILS = "上涨 回落 发布 夺冠 公布 调整 突破 推出 涨价 改革 开幕 签约 升级 创新高 迎来 遭遇 宣布 增长 下调 亮相".split()


def write_titles(path: Path, rows: int, seed: int = 0) -> None:
    """Titles like the seed's THUCNews set: 12-25 Chinese characters and a digit or two, label 0-9."""
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["0", "1"])
        for i in range(rows):
            words = [rng.choice(HEADS), rng.choice(TAILS), rng.choice(HEADS), rng.choice(TAILS)]
            out.writerow([f"{''.join(words)}{rng.randint(1, 99)}%{rng.choice(TAILS)}", i % 10])


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(folder: str, what: str) -> dict:
    """In this (fresh) process: import, then read; time and memory beyond the imports."""
    from core.data import checking, reading
    from core.store.settings import get_settings
    from core.training import models

    settings = get_settings(f"sqlite:///{folder}/bench.db")
    files = reading.files_from_folder(folder)
    tokenizer = models.load_tokenizer(models.BUNDLED, settings) if what == "check" else None

    def read(files) -> int:
        if what == "check":
            check = checking.check_dataset(files, settings, tokenizer=tokenizer, max_length=64)
            assert check.ok, check.errors
            return len(check.splits["train"])
        return len(reading.read_text_file(files["train"], settings).frame)

    imported = _rss_mb()
    with tempfile.TemporaryDirectory() as small:
        for split, seed in (("train", 3), ("dev", 4), ("test", 5)):
            write_titles(Path(small) / f"{split}.csv", 20, seed)
        read(reading.files_from_folder(small))  # the first use, of any file
    before = _rss_mb()
    start = time.perf_counter()
    rows = read(files)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"rows": rows, "seconds": seconds, "beyond_mb": peak - before, "first_use_mb": before - imported}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 200_000, 1_000_000])
    parser.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)  # FOLDER check|read, in the child
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return
    print("| rows | file MB | what | seconds | rows/s | first use, any file (MB) | the file (MB) | x file size |")
    print("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for rows in args.rows:
        with tempfile.TemporaryDirectory() as folder:
            write_titles(Path(folder) / "train.csv", rows)
            write_titles(Path(folder) / "dev.csv", 1000, seed=1)
            write_titles(Path(folder) / "test.csv", 1000, seed=2)
            size = (Path(folder) / "train.csv").stat().st_size / 2**20
            for what in ("check", "read"):
                out = subprocess.run(
                    [sys.executable, __file__, "--measure", folder, what],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                r = json.loads(out.stdout.strip().splitlines()[-1])
                label = "check train/dev/test (Data page, submit)" if what == "check" else "read a file to label"
                print(
                    f"| {rows:,} | {size:.1f} | {label} | {r['seconds']:.2f} | {rows / r['seconds']:,.0f} | "
                    f"{r['first_use_mb']:.0f} | {r['beyond_mb']:.0f} | {r['beyond_mb'] / size:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
