"""Translations (core.i18n): every string the source marks has its Chinese, with the same placeholders; the language
is per person (per thread); numbers and durations follow it; the command line follows LANG."""

from __future__ import annotations

import string
import threading
import weakref
from pathlib import Path
from types import SimpleNamespace

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from core import i18n, words
from core.i18n import _
from tests.english import words_left

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("core", "pages")  # and the two files at the top
TOP_FILES = ("app.py", "ui.py")


def source_messages() -> dict[str, list[str]]:
    """msgid (a plural's singular) -> where the source marks it, read from the code itself (as `make translations`
    extracts it): a string marked but never added to the catalogue is caught without running the extractor."""
    found: dict[str, list[str]] = {}
    for folder in SOURCES:
        for file, line, message, _comments, _context in extract_from_dir(
            ROOT / folder, method_map=[("**.py", "python")], keywords={"_": None, "ngettext": (1, 2), "N_": None}
        ):
            key = message if isinstance(message, str) else message[0]
            found.setdefault(key, []).append(f"{folder}/{file}:{line}")
    from babel.messages.extract import extract

    for name in TOP_FILES:
        with open(ROOT / name, "rb") as f:
            for line, message, _comments, _context in extract(
                "python", f, keywords={"_": None, "ngettext": (1, 2), "N_": None}
            ):
                key = message if isinstance(message, str) else message[0]
                found.setdefault(key, []).append(f"{name}:{line}")
    return found


def chinese_catalogue():
    with open(ROOT / "locales" / "zh" / "LC_MESSAGES" / "lora_lab.po", "rb") as f:
        return read_po(f, locale="zh")


def fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def test_every_marked_string_has_its_chinese_with_the_same_placeholders():
    catalogue = chinese_catalogue()
    missing, broken = [], []
    for msgid, where in sorted(source_messages().items()):
        entry = catalogue.get(msgid)
        translations = [] if entry is None else ([entry.string] if isinstance(entry.string, str) else entry.string)
        if entry is None or entry.fuzzy or not all(translations):
            missing.append(f"{msgid!r} ({where[0]})")
            continue
        ids = [entry.id] if isinstance(entry.id, str) else list(entry.id)
        expected = set().union(*(fields(i) for i in ids)) - {"n"}
        for text in translations:
            if fields(text) - {"n"} != expected:
                broken.append(f"{msgid!r}: {sorted(fields(text))} against {sorted(expected)}")
    assert not missing, f"{len(missing)} strings without Chinese:\n" + "\n".join(missing[:40])
    assert not broken, "placeholders dropped or renamed:\n" + "\n".join(broken[:40])


def test_the_catalogue_holds_no_string_the_source_has_dropped():
    """A msgid left after its string changed would hide that the new one is untranslated (fuzzy ones are kept
    aside by `make translations`, marked obsolete)."""
    marked = source_messages()
    stale = [m.id for m in chinese_catalogue() if m.id and (m.id if isinstance(m.id, str) else m.id[0]) not in marked]
    assert not stale, stale[:20]


def test_a_stored_times_column_keeps_its_utc_ending_in_every_language():
    """words.in_time_zone finds a table's stored times by the ending " (UTC)" of their column: a translation that
    wrote it otherwise would leave them in UTC, saying nothing."""
    lost = [
        (m.id, m.string)
        for m in chinese_catalogue()
        if isinstance(m.id, str) and m.id.endswith(words.UTC_MARK) and not m.string.endswith(words.UTC_MARK)
    ]
    assert not lost, lost


def test_a_placeholder_check_catches_a_dropped_name():
    assert fields("第 {run} 次运行失败：{reason}") == {"run", "reason"}
    assert fields("运行失败") != fields("Run {run} failed")


def test_the_language_is_per_thread_so_one_visitor_never_changes_anothers():
    seen = {}
    ready = threading.Barrier(2)

    def visitor(code):
        i18n.set_language(code)
        ready.wait()  # both have chosen before either reads
        seen[code] = (i18n.language(), _("Compare"))

    threads = [threading.Thread(target=visitor, args=(c,)) for c in ("zh", "en")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen["en"] == ("en", "Compare")
    assert seen["zh"][0] == "zh" and seen["zh"][1] != "Compare" and not words_left(seen["zh"][1], set())
    assert i18n.language() == "en", "this thread kept its own"


@pytest.mark.parametrize(
    ("locale", "default", "expected"),
    [
        ("zh-CN", "en", "zh"),
        ("zh_Hans_CN", "en", "zh"),
        ("zh_CN.UTF-8", "en", "zh"),
        ("en-GB", "zh", "en"),
        ("fr-FR", "zh", "zh"),
        (None, "en", "en"),
        ("fr:zh_TW:en", "en", "zh"),
    ],
)
def test_a_locale_names_one_of_our_languages_or_the_default(locale, default, expected):
    assert i18n.pick(locale, default) == expected


def test_the_command_line_follows_lang_and_the_server_default_wins():
    assert i18n.from_environment({"LANG": "zh_CN.UTF-8"}) == "zh"
    assert i18n.from_environment({"LANG": "C.UTF-8"}) == "en"
    assert i18n.from_environment({"LANGUAGE": "fr:zh", "LANG": "en_US.UTF-8"}) == "zh"
    assert i18n.from_environment({"LORALAB_LANGUAGE": "en", "LANG": "zh_CN.UTF-8"}) == "en"


def test_numbers_shares_and_durations_follow_the_language():
    assert (words.percent(0.737), words.count(1234), words.duration_text(200)) == ("73.7 %", "1,234", "3 min 20 s")
    with i18n.speaking("zh"):
        assert words.percent(0.737) == "73.7%"
        assert words.count(1234) == "1,234"
        assert words.duration_text(200) == "3 分 20 秒"
        assert words.duration_text(7260) == "2 小时 1 分"
        assert words.epochs_text(3) == "3 轮"
    assert (words.epochs_text(1), words.epochs_text(2.5)) == ("1 epoch", "2.5 epochs")


def test_what_one_process_writes_is_read_in_each_readers_language(tmp_path):
    """A run's failure and notes are written by the worker in its language and read by many people in theirs: they
    are kept as their English and values (a real SQLite file, the columns' own types) and read back in the reader's
    language, nested sentences and plurals included; text that is not ours, or written before, is read as it is."""
    import pickle

    from sqlalchemy import Column, Integer, MetaData, Table, create_engine, insert, select

    from core.data.reading import DataError
    from core.store.db import Words, WordsList
    from core.training.failures import TrainingError, plain_error

    gone = ValueError(_("Run {run} no longer exists.", run=7))
    error = _("Labelling failed: {error}", error=gone)
    notes = [_("Resumed from the checkpoint at step {step}.", step=40), i18n.ngettext("{n} run", "{n} runs", 3)]
    notes.append("CUDA error: device-side assert triggered")  # a library's own words
    table = Table("said", MetaData(), Column("id", Integer, primary_key=True), Column("error", Words))
    table.append_column(Column("notes", WordsList))
    engine = create_engine(f"sqlite:///{tmp_path / 'said.db'}")
    table.metadata.create_all(engine)
    with engine.begin() as db:
        db.execute(insert(table).values(id=1, error=error, notes=notes))
        db.execute(insert(table).values(id=2, error="Out of memory.", notes=["written before"]))
        raw = db.exec_driver_sql("SELECT error FROM said WHERE id = 1").scalar()
    assert '"catalogue": "Labelling failed: {error}"' in raw and "Run {run} no longer exists." in raw

    def read(row: int):
        with engine.connect() as db:
            return db.execute(select(table.c.error, table.c.notes).where(table.c.id == row)).one()

    assert read(1) == (error, notes), "English in, English out"
    with i18n.speaking("zh"):
        assert read(1) == (
            _("Labelling failed: {error}", error=_("Run {run} no longer exists.", run=7)),
            [_("Resumed from the checkpoint at step {step}.", step=40), "3 次运行", notes[2]],
        )
        assert read(1)[0] != error and "7" in read(1)[0]
        assert read(2) == ("Out of memory.", ["written before"])
        kept = pickle.loads(pickle.dumps(read(1)[0]))  # a page's cache keeps the sentence, not only its text
    assert i18n.reread(i18n.record(kept)) == error

    class Model:  # a value put in a sentence (an error whose traceback holds a model) is not kept alive by it
        pass

    model = Model()
    alive = weakref.ref(model)
    held = _("Labelling failed: {error}", error=model)
    del model
    assert alive() is None and isinstance(held.params["error"], str)

    # A run that fails on an error of ours keeps the sentence; one error of a library's, its text.
    run, folder = SimpleNamespace(config={}, method="full"), tmp_path
    said = plain_error(TrainingError(_("Run {run} no longer exists.", run=7)), run, folder)
    data = plain_error(DataError(_("Run {run} no longer exists.", run=7)), run, folder)
    assert isinstance(said, i18n.Said) and isinstance(data, i18n.Said) and said == data == str(gone)
    assert i18n.record(plain_error(KeyError("x"), run, folder))["params"] == {"kind": "KeyError", "error": "'x'"}


def test_a_page_left_in_english_is_caught():
    """The check the page tests use finds English words, and passes over what stays as it is."""
    kept = "训练 LoRA 与 BERT 的 F1，文件 train.csv，模型 sentence-transformers/all-MiniLM-L6-v2"
    assert words_left(kept, set()) == []
    assert words_left("<b>准确率</b> of the run", set()) == ["of", "the", "run"]
    assert words_left("类别 sports", {"sports"}) == []
    assert words_left("模型 bert-base-chinese 的 LoRA alpha 与 dropout", set()) == []
    assert words_left("all base", set()) == ["all", "base"], "only whole ids are passed over"


@pytest.fixture
def empty_lab(tmp_path, monkeypatch):
    monkeypatch.setenv("LORALAB_DB_URL", f"sqlite:///{tmp_path / 'runs.db'}")
    monkeypatch.setenv("LORALAB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LORALAB_LANGUAGE", raising=False)
    monkeypatch.setattr("core.jobs.worker.ensure_worker", lambda settings: False)


def test_the_sidebar_switch_holds_each_visitors_own_language(empty_lab):
    """(The switch's effect on every page, across pages, is walked in the browser test: AppTest runs app.py's frame
    on the first run only.)"""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    switch = at.sidebar.radio(key="app_language")
    assert switch.value == "en" and switch.options == ["English", "中文"]
    chose = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    chose.session_state["app_language"] = "zh"  # a visitor who chose 中文 earlier in their session
    assert chose.run().sidebar.radio(key="app_language").value == "zh"
    assert (
        AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run().sidebar.radio(key="app_language").value
        == "en"
    )


def test_the_server_default_is_used_where_the_browser_names_none_of_ours(empty_lab, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("LORALAB_LANGUAGE", "zh")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert at.sidebar.radio(key="app_language").value == "zh"


def test_switching_language_keeps_what_was_typed_and_chosen(empty_lab):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("pages/data.py").run()
    at.radio(key="data_source").set_value("Use the bundled demo set").run()
    at.text_input(key="data_name").input("新闻 demo").run()
    at.session_state["app_language"] = "zh"
    at.run()
    assert not at.exception
    assert at.radio(key="data_source").value == "Use the bundled demo set"
    assert at.text_input(key="data_name").value == "新闻 demo"
