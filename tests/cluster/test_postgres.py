"""The engine on a real PostgreSQL server: migrations, atomic claims from several processes, two workers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, select, text

from core.jobs.runs import create_comparison, create_run
from core.store.db import MIGRATIONS, Base, Prediction, Run, get_engine, session_factory
from core.training.config import TrainConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


def python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, text=True, **kwargs)


def test_migrations_run_once_from_many_processes_and_build_the_models_schema(pg_url):
    # Four processes open a fresh database at once, as workers on four machines starting together would.
    opener = "import sys; from core.store.db import open_database; open_database(sys.argv[1])"
    starters = [python(opener, pg_url) for _ in range(4)]
    assert [p.wait(timeout=120) for p in starters] == [0, 0, 0, 0]
    with get_engine(pg_url).connect() as conn:
        assert conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg"
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [head_revision()]
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


CLAIMER = """
import json, os, sys, time
from core.store.db import open_database
from core.store.settings import get_settings
from core.jobs.worker import claim_next_run

settings = get_settings(sys.argv[1])
open_database(settings.db_url)  # connected and migrated before the start signal
print("ready", flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.005)
claimed = []
while (run_id := claim_next_run(settings)) is not None:
    claimed.append(run_id)
print(json.dumps(claimed), flush=True)
"""


def test_four_processes_claim_a_hundred_queued_runs_each_exactly_once(pg_lab, csv_folder, tmp_path):
    settings = pg_lab.settings
    dataset = pg_lab.store(csv_folder)
    with session_factory(settings.db_url)() as s:
        queued = [create_run(s, dataset, "m", TrainConfig(seed=i)).id for i in range(100)]
    go = tmp_path / "go"
    claimers = [python(CLAIMER, settings.db_url, str(go), stdout=subprocess.PIPE) for _ in range(4)]
    assert [p.stdout.readline().strip() for p in claimers] == ["ready"] * 4
    go.touch()  # all four start claiming at once
    claims = []
    for p in claimers:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        claims.append(json.loads(out.strip().splitlines()[-1]))
    every = [run_id for c in claims for run_id in c]
    assert len(every) == len(set(every)), "a run was claimed twice"
    assert sorted(every) == queued, "a run was not claimed"
    assert sum(1 for c in claims if c) >= 2, f"the claims did not overlap: {list(map(len, claims))}"
    with session_factory(settings.db_url, read_only=True)() as s:
        assert s.scalar(select(func.count()).where(Run.status == "running")) == 100


def test_two_workers_on_one_database_train_a_pair_each_run_once(pg_lab, csv_folder, tiny_model, tmp_path):
    """Two workers as on two machines: each has its own data folder (its own worker lock), which is a second mount
    of the same files, as an NFS share would be."""
    settings = pg_lab.settings
    dataset = pg_lab.store(csv_folder)
    (settings.data_dir / "runs").mkdir(parents=True, exist_ok=True)
    other_mount = tmp_path / "other-machine-data"
    other_mount.mkdir()
    for name in ("datasets", "runs"):
        (other_mount / name).symlink_to(settings.data_dir / name)
    with session_factory(settings.db_url)() as s:
        config = TrainConfig(method="full", learning_rate=3e-3, **pg_lab.FAST)
        _, (full, lora) = create_comparison(s, dataset, tiny_model, config)
        other = create_run(s, dataset, tiny_model, TrainConfig(method="lora", seed=1, **pg_lab.FAST))
    run_ids = [full.id, lora.id, other.id]
    workers, logs = [], []
    for i, data_dir in enumerate((settings.data_dir, other_mount)):
        logs.append(tmp_path / f"worker-{i}.log")
        with open(logs[-1], "w") as out:
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "core", "worker", "--db", settings.db_url, "--exit-when-idle"],
                    cwd=ROOT,
                    env={**os.environ, "LORALAB_DATA_DIR": str(data_dir)},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    try:
        assert [w.wait(timeout=300) for w in workers] == [0, 0]
    finally:
        for w in workers:
            w.kill()
    started = [int(n) for log in logs for n in re.findall(r"run (\d+) started", log.read_text())]
    assert sorted(started) == sorted(run_ids), "each run is started by exactly one worker"
    for run_id in run_ids:
        run = pg_lab.run(run_id)
        assert run.status == "completed", run.error
        assert pg_lab.metrics(run_id) > 0 and run.test_metrics["accuracy"] >= 0
        with session_factory(settings.db_url, read_only=True)() as s:
            assert s.scalar(select(func.count(Prediction.id)).where(Prediction.run_id == run_id)) == 24
    assert pg_lab.run(lora.id).trainable_params < pg_lab.run(full.id).trainable_params / 2

    # Predict reads the artifact through the database row, whichever worker wrote it.
    from core.training.predict import load_run

    with session_factory(settings.db_url, read_only=True)() as s:
        label, probs = load_run(settings, s.get(Run, lora.id)).predict("goal match team")
    assert label in probs and abs(sum(probs.values()) - 1) < 1e-4
