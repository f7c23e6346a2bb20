"""The classroom password fails closed: a secrets file that exists but cannot be read opens no page."""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit import config
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def secrets_file(tmp_path, monkeypatch):
    """Point Streamlit at a secrets file of the test's own; put its settings back afterwards."""
    monkeypatch.setattr("core.jobs.worker.ensure_worker", lambda settings: False)
    path = tmp_path / ".streamlit" / "secrets.toml"
    path.parent.mkdir()
    before = config.get_option("secrets.files")
    config.set_option("secrets.files", [str(path)])
    st.secrets._reset()
    yield path
    config.set_option("secrets.files", before)
    st.secrets._reset()


def test_a_secrets_file_with_a_typo_opens_no_page(settings, secrets_file):
    secrets_file.write_text('password = "hunter2\n')  # the closing quote is missing
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90).run()
    assert not at.exception
    (error,) = at.error
    assert "The dashboard is closed: its password file (.streamlit/secrets.toml) cannot be read" in error.value
    assert "hunter2" not in error.value
    assert not at.text_input and not at.button and not at.file_uploader
    with pytest.raises(ValueError, match=r"Known pages: \['Sign in'\]"):  # no other page is even registered
        at.switch_page("pages/data.py")


@pytest.mark.parametrize("content", [None, 'other = "value"\n'])
def test_without_a_password_the_dashboard_is_open(settings, secrets_file, content):
    """No secrets file at all, or one without a password: open, as on a laptop."""
    if content is not None:
        secrets_file.write_text(content)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90).run()
    assert not at.exception and not at.error
    at.switch_page("pages/data.py").run()
    assert not at.exception and at.file_uploader


def test_a_readable_password_file_asks_for_the_password(settings, secrets_file):
    secrets_file.write_text('password = "hunter2"\n')
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90).run()
    assert [t.key for t in at.text_input] == ["app_password"]
    at.text_input(key="app_password").input("hunter2").run()
    at.switch_page("pages/data.py").run()
    assert not at.exception and at.file_uploader
