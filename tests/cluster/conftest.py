"""Fixtures for tests against real servers: a PostgreSQL database and a Ray cluster.

`make test` starts both (scripts/services.sh) and sets LORALAB_TEST_PG_URL and LORALAB_TEST_RAY_ADDRESS; run alone,
each test that needs a server it does not have is skipped and says why.
"""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from core.store.db import Run, get_engine, open_database
from core.store.settings import get_settings
from tests import helpers

PG_URL = os.environ.get("LORALAB_TEST_PG_URL")
RAY_ADDRESS = os.environ.get("LORALAB_TEST_RAY_ADDRESS")


def _skip_without_postgres() -> None:
    if not PG_URL:
        pytest.skip("no PostgreSQL server: set LORALAB_TEST_PG_URL (`make test` starts one)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed: pip install -e '.[postgres]'")


@pytest.fixture
def pg_url():
    """A fresh database on the test server, dropped afterwards."""
    _skip_without_postgres()
    name = f"loralab_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    get_engine.cache_clear()  # FORCE below closes whatever connections its engines still hold
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def pg_settings(pg_url, tmp_path, monkeypatch):
    monkeypatch.setenv("LORALAB_DB_URL", pg_url)
    monkeypatch.setenv("LORALAB_DATA_DIR", str(tmp_path / "data"))
    settings = get_settings()
    open_database(settings.db_url)
    return settings


@pytest.fixture
def ray_settings(request, tmp_path, monkeypatch):
    """Settings that run every claimed run as a Ray job: on PostgreSQL when there is a server, else SQLite."""
    if not RAY_ADDRESS:
        pytest.skip("no Ray cluster: set LORALAB_TEST_RAY_ADDRESS (`make test` starts one)")
    try:
        import ray.job_submission  # noqa: F401
    except ImportError:
        pytest.skip("Ray is not installed: pip install -e '.[ray]'")
    if PG_URL:
        db_url = request.getfixturevalue("pg_url")
    else:
        db_url = f"sqlite:///{tmp_path / 'ray-runs.db'}"
    monkeypatch.setenv("LORALAB_DB_URL", db_url)
    monkeypatch.setenv("LORALAB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LORALAB_RUNNER", "ray")
    monkeypatch.setenv("RAY_ADDRESS", RAY_ADDRESS)
    settings = get_settings()
    assert settings.runner == "ray" and settings.ray_address == RAY_ADDRESS
    open_database(settings.db_url)
    return settings


@pytest.fixture
def ray_client(ray_settings):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(RAY_ADDRESS)


class Lab:
    """Small helpers over one database."""

    FAST = {"epochs": 3, "batch_size": 16, "evals_per_epoch": 1, "max_length": 32}
    LONG = {**FAST, "epochs": 100, "batch_size": 8}  # still training when a test stops it

    def __init__(self, settings):
        self.settings = settings

    def store(self, folder, name="tiny"):
        return helpers.store(self.settings, folder, name)

    def run(self, run_id) -> Run:
        return helpers.get_run(self.settings, run_id)

    def metrics(self, run_id) -> int:
        return helpers.metric_count(self.settings, run_id)

    @staticmethod
    def wait(predicate, timeout=120.0, every=0.2):
        return helpers.wait_for(predicate, timeout, every)


@pytest.fixture
def pg_lab(pg_settings) -> Lab:
    return Lab(pg_settings)


@pytest.fixture
def ray_lab(ray_settings) -> Lab:
    return Lab(ray_settings)


@pytest.fixture
def sqlite_lab(settings) -> Lab:
    return Lab(settings)
