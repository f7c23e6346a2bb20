"""The dashboard's words in the reader's language: English (the source, and the fallback for anything not yet
translated) and Simplified Chinese, from gettext catalogues managed with Babel
(`locales/<language>/LC_MESSAGES/lora_lab.po`; `make translations` extracts and updates them). Imports nothing of
core.

Every string a person reads goes through `_` (or `ngettext` where a number decides the form), whole, with named
placeholders, so that a translation may put the pieces in its own order::

    _("Run {run} failed: {reason}", run=7, reason=why)
    ngettext("{n} run", "{n} runs", n)

A string kept in a constant is marked with `N_` (found by the extractor, left as it is) and translated where shown.
What one process writes for others to read later (a run's notes and failure, written by the worker) is kept as its
English and values (`Said`, `record`) and read in each reader's language (`reread`).

The language is per person and per thread: the dashboard sets it at the top of each page run (app.py), in a context
variable that belongs to that run's thread, so two browsers on one server never see each other's language. The
command line and the worker take it from the environment (`from_environment`: LORALAB_LANGUAGE, then LANGUAGE,
LC_ALL, LC_MESSAGES, LANG)."""

from __future__ import annotations

import functools
import gettext
import io
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

SOURCE = "en"
LANGUAGES = {"en": "English", "zh": "中文"}  # code -> its name in itself, as the switch shows it
LOCALES = Path(__file__).resolve().parent.parent / "locales"
DOMAIN = "lora_lab"
BABEL_LOCALES = {"en": "en", "zh": "zh_Hans_CN"}  # for numbers and dates

_language: ContextVar[str] = ContextVar("lora_lab_language", default=SOURCE)


def pick(locale: str | None, default: str = SOURCE) -> str:
    """The language of ours that a locale names ('zh-CN', 'zh_Hans', 'zh_CN.UTF-8' -> 'zh'; 'en-GB' -> 'en'), or
    `default` where it names none of ours (French) or nothing."""
    for part in (locale or "").replace("-", "_").split(":"):
        code = part.split(".")[0].split("_")[0].lower()
        if code in LANGUAGES:
            return code
    return default


def server_default(environ: dict | None = None) -> str:
    """The dashboard's language for a browser that names none of ours: LORALAB_LANGUAGE, else English."""
    return pick((os.environ if environ is None else environ).get("LORALAB_LANGUAGE"))


def visitor(choice: str | None, browser_locale: str | None) -> str:
    """A dashboard visitor's language: their choice on the switch, else their browser's, else the server's default."""
    return choice if choice in LANGUAGES else pick(browser_locale, server_default())


def from_environment(environ: dict | None = None) -> str:
    """The language a process without a browser speaks: LORALAB_LANGUAGE (the server's default), else the first of
    LANGUAGE, LC_ALL, LC_MESSAGES, LANG that names one of ours, else English."""
    env = os.environ if environ is None else environ
    if env.get("LORALAB_LANGUAGE"):
        return pick(env["LORALAB_LANGUAGE"])
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        if pick(env.get(name), "") != "":
            return pick(env.get(name))
    return SOURCE


def language() -> str:
    """The language of this thread's reader: 'en' or 'zh'."""
    return _language.get()


def set_language(code: str) -> None:
    """Speak `code` in this thread from now on (the dashboard, at the top of each page run)."""
    _language.set(code if code in LANGUAGES else SOURCE)


@contextmanager
def speaking(code: str) -> Iterator[None]:
    """Speak `code` inside the block, then as before (tests; a message written for another reader)."""
    token = _language.set(code if code in LANGUAGES else SOURCE)
    try:
        yield
    finally:
        _language.reset(token)


@functools.cache
def catalogue(code: str) -> gettext.NullTranslations:
    """A language's translations, read from its .po file (compiled in memory: no generated file to keep in step);
    English, or a language without a file, translates every string to itself."""
    if code == SOURCE:
        return gettext.NullTranslations()
    path = LOCALES / code / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not path.is_file():
        return gettext.NullTranslations()
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with path.open("rb") as f:
        read = read_po(f, locale=code, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, read)  # fuzzy entries are left out: English until a translator confirms them
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


class Said(str):
    """A sentence of the catalogue as one reader reads it, which remembers what was said: its English and the values
    put in. What the worker writes on a run (notes, a failure) is kept that way (`record`) and read again in each
    reader's language (`reread`), not in the language of the process that wrote it. Its values are kept as a record
    keeps them (`kept`): nothing it holds can keep a model or a traceback alive."""

    __slots__ = ("message", "params")

    def __new__(cls, text: str, message: str | tuple[str, str], params: dict):
        said = super().__new__(cls, text)
        said.message, said.params = message, params
        return said

    def __reduce__(self):  # pickled (a cache, another process) whole, not as its text alone
        return Said, (str(self), self.message, self.params)


def kept(params: dict) -> dict:
    """A sentence's values as a record keeps them, JSON-ready: numbers and text as they are, a sentence of ours as its
    record, an error as its message (`words_of`), anything else as its text."""

    def value(v):
        if isinstance(v, BaseException):
            v = words_of(v)
        if isinstance(v, Said):
            return record(v)
        return v if v is None or isinstance(v, bool | int | float | str | dict) else str(v)

    return {k: value(v) for k, v in params.items()}


def _(message: str, /, **params) -> Said:
    """`message` in the reader's language, its {named} placeholders filled in."""
    translated = catalogue(language()).gettext(message)
    return Said(translated.format(**params) if params else translated, message, kept(params))


def ngettext(singular: str, plural: str, n: int, /, **params) -> Said:
    """The form for `n` (English: one, other; Chinese: one form), `{n}` and the other placeholders filled in, `n`
    written as the reader's language writes numbers."""
    translated = catalogue(language()).ngettext(singular, plural, n)
    return Said(translated.format(n=number(n), **params), (singular, plural), kept({"n": n, **params}))


RECORD = "catalogue"  # the key that marks a kept sentence


def record(text: str) -> str | dict:
    """What to keep of a text written for people who read it later, each in their own language: a sentence of the
    catalogue as {"catalogue": its English, "params": its values (kept the same way)}, JSON-ready; other text (a
    library's own error message) as it is."""
    if not isinstance(text, Said):
        return text
    message = list(text.message) if isinstance(text.message, tuple) else text.message
    return {RECORD: message, "params": text.params}


def words_of(e: BaseException) -> str:
    """An error's message: the sentence it was raised with, kept whole (`Said`) where it was one of ours (one
    argument, or DataError's one problem), else its text."""
    said = getattr(e, "problems", None) or e.args
    plain = type(e).__str__ is BaseException.__str__  # an error that writes its message its own way keeps it
    return said[0] if plain and len(said) == 1 and isinstance(said[0], Said) else str(e)


def reread(kept: str | dict) -> str:
    """A kept text (`record`) in this reader's language; a text kept before sentences were recorded, as it is. A
    sentence whose translation no longer fits its values is given in English."""
    if not isinstance(kept, dict) or RECORD not in kept:
        return kept
    message = kept[RECORD]
    params = {k: reread(v) for k, v in kept.get("params", {}).items()}
    for code in (language(), SOURCE):
        with speaking(code):
            try:
                if isinstance(message, list):
                    rest = {k: v for k, v in params.items() if k != "n"}
                    return ngettext(*message, params["n"], **rest)
                return _(message, **params)
            except (KeyError, IndexError, ValueError, TypeError):
                continue
    return str(message)


def record_text(text: str) -> str:
    """`record` for a text column: a kept sentence as its JSON."""
    kept = record(text)
    return json.dumps(kept, ensure_ascii=False) if isinstance(kept, dict) else kept


def reread_text(stored: str) -> str:
    """`reread` for a text column (`record_text`)."""
    if stored.startswith('{"' + RECORD + '"'):
        try:
            return reread(json.loads(stored))
        except ValueError:
            pass
    return stored


def N_(message: str) -> str:
    """Marks a constant for translation (the extractor finds it); `_` translates it where it is shown."""
    return message


def babel_locale() -> str:
    return BABEL_LOCALES[language()]


def number(x: float, digits: int | None = None) -> str:
    """A number as the reader writes it: 1,234; 0.5 with `digits` decimals when given."""
    from babel.numbers import format_decimal

    pattern = None if digits is None else "#,##0" + ("." + "0" * digits if digits else "")
    return format_decimal(x, format=pattern, locale=babel_locale())
