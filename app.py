"""LoRA Lab: the frame and the router. Pages live in pages/; everything that is not UI lives in core/.

The navigation is drawn before anything heavy is imported: it is the first thing a visitor sees, within a second
or two of a cold start.
"""

import hmac
import os

import streamlit as st

from core import i18n
from core.i18n import _


def secrets_problem(e: FileNotFoundError) -> str | None:
    """None when there is no secrets file at all; else why the one there cannot be read."""
    if not any(os.path.exists(p) for p in st.get_option("secrets.files")):
        return None
    return _(
        "The dashboard is closed: its password file (.streamlit/secrets.toml) cannot be read ({why}). The "
        "administrator should correct it; the dashboard opens again once it can be read.",
        why=e.__cause__ or _("not a TOML file"),
    )


def signed_in() -> bool:
    """On a shared classroom server, the password set as `password` in .streamlit/secrets.toml; else open.

    Fails closed: a secrets file that exists but cannot be read opens nothing (sign_in_page says why).
    """
    try:
        expected = st.secrets.get("password")
    except FileNotFoundError as e:  # StreamlitSecretNotFoundError: no secrets file, or one that cannot be parsed
        return secrets_problem(e) is None
    return not expected or st.session_state.get("app_signed_in", False)


def sign_in_page() -> None:
    st.title("LoRA Lab")
    try:
        st.secrets.get("password")
    except FileNotFoundError as e:
        return st.error(secrets_problem(e))
    given = st.text_input(_("Password"), type="password", key="app_password", help=_("Ask your teacher for it."))
    if given:
        expected = str(st.secrets["password"])
        if hmac.compare_digest(given.encode(), expected.encode()):  # takes as long whatever is typed
            st.session_state.app_signed_in = True
            st.rerun()
        st.error(_("That password is not right. Try again."))


def choose_language() -> None:
    """This visitor's language for this run: their browser's on the first visit (else the server's default,
    LORALAB_LANGUAGE), then the switch in the sidebar, kept for their browser session. Set before any word is
    written, in a context variable of this run's thread: no other visitor's page changes (ui.speak, on each page,
    reads the same choice)."""
    st.session_state.app_language = i18n.visitor(st.session_state.get("app_language"), st.context.locale)
    st.sidebar.radio(
        "语言 · Language", list(i18n.LANGUAGES), format_func=i18n.LANGUAGES.get, horizontal=True, key="app_language"
    )
    i18n.set_language(st.session_state.app_language)


# The sidebar holds only the language switch: folded away (» at the top left), so that a projector's 1024 pixels go
# to the page; a visitor's browser language chose the language already.
st.set_page_config(
    page_title="LoRA Lab", page_icon=":material/science:", layout="wide", initial_sidebar_state="collapsed"
)
choose_language()  # every word from here on is in it; a widget keeps its value when the language changes
if not signed_in():  # an optional classroom password; no page opens before it
    st.navigation([st.Page(sign_in_page, title=_("Sign in"))], position="hidden").run()
    st.stop()
# The steps in order, across the top (the sidebar's page list is switched off in .streamlit/config.toml, or
# Streamlit would first show the raw file names of pages/ to the first visitor after a start).
page = st.navigation(
    [
        st.Page("pages/home.py", title=_("Start"), icon=":material/home:", default=True),
        st.Page("pages/data.py", title=_("Data"), icon=":material/table:"),
        st.Page("pages/train.py", title=_("Train"), icon=":material/model_training:"),
        st.Page("pages/runs.py", title=_("Runs"), icon=":material/monitoring:"),
        st.Page("pages/compare.py", title=_("Compare"), icon=":material/compare:"),
        st.Page("pages/predict.py", title=_("Predict"), icon=":material/chat:"),
    ],
    position="top",
)
from sqlalchemy.exc import InterfaceError, OperationalError  # noqa: E402

import ui  # noqa: E402 (after the navigation is drawn: its imports take a while on a cold start)

ui.settings()  # settings that cannot be used stop here, with what to change
worker_notice = st.empty()  # above the page, filled once the page is drawn
try:
    page.run()
except (OperationalError, InterfaceError) as e:  # the database server is down or unreachable
    st.error(ui.database_problem(e))
finally:
    # Queued runs train in a background process, even with every tab closed; it is started after the page is
    # drawn (its imports would take the CPU from a cold start's first page). While it starts, queued runs wait.
    if ui.keep_worker_running() == "down":
        log = ui.settings().data_dir / "worker.log"
        worker_notice.warning(
            _(
                "The background worker stopped or did not start, so queued runs wait; trying again. Its log: {log}",
                log=log,
            )
        )
