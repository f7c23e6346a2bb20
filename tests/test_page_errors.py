"""What the pages show for a URL, a setting or a database they cannot use: one plain message, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.test_pages import PAGES, no_worker, open_page  # noqa: F401 - no_worker is an autouse fixture

ROOT = Path(__file__).resolve().parent.parent


def errors(at: AppTest) -> str:
    return "\n".join(str(e.value) for e in at.error)


@pytest.mark.parametrize("run", ["²", "100000000000000000000", "3,²", "-1"])
def test_a_run_id_in_the_url_that_is_not_one_is_a_plain_message(settings, run):
    at = open_page("runs", run=run)
    assert not at.exception
    assert f"There is no run {run}" in errors(at)
    at = open_page("compare", runs=run)
    assert not at.exception


def test_an_unreachable_database_is_a_plain_message_on_every_page(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("LORALAB_DB_URL", "postgresql+psycopg://lab:secret-pw@127.0.0.1:9/lab")  # nothing listens
    monkeypatch.setenv("LORALAB_DATA_DIR", str(tmp_path / "data"))
    for page in PAGES:
        at = open_page(page)
        assert not at.exception, page
        assert "The database postgresql+psycopg://lab:***@127.0.0.1:9/lab cannot be reached" in errors(at), page
        assert "secret-pw" not in errors(at)


def test_a_setting_that_cannot_be_used_is_a_plain_message_on_every_page(settings, monkeypatch):
    monkeypatch.setenv("LORALAB_MAX_UPLOAD_MB", "200MB")
    for page in PAGES:
        at = open_page(page)
        assert not at.exception, page
        assert "LORALAB_MAX_UPLOAD_MB is '200MB'" in errors(at), page


def test_the_dashboard_hides_tracebacks():
    import tomllib
    from streamlit import config

    options = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert options["client"]["showErrorDetails"] == config.ShowErrorDetailsConfigOptions.NONE
