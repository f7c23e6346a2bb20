"""How numbers, shares, sizes, durations and times read on screen and in messages, in the reader's language
(core.i18n: English keeps the house style, '73.7 %', '2 min 10 s'; Chinese is written by Babel's rules for it and
the catalogue, '73.7%', '2 分 10 秒'). Imports nothing of core but core.i18n."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timezone
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.i18n import N_, _, babel_locale, ngettext, number

if TYPE_CHECKING:  # pandas is imported by the caller that has a table: this module stays light
    import pandas as pd


def memory_text(mb: float) -> str:
    """Memory, measured in MB, written as every size is (size_text): '900 MB', '1.1 GB'."""
    return size_text(mb * 2**20)


def duration_text(seconds: float | None) -> str:
    """Plain and rounded: "about 2 min 10 s" is what a person plans with; a tenth under a second ("0.2 s", where
    a round 0 would read as nothing at all). The one way the dashboard writes a duration, measured or estimated."""
    if seconds is None:
        return _("unknown")
    if 0 < seconds < 0.95:
        return _("{seconds} s", seconds=number(seconds, 1)) if seconds >= 0.05 else _("under 0.1 s")
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return _("{seconds} s", seconds=number(seconds))
    if seconds < 3570:  # to 10 s under 10 minutes, to the minute above
        minutes, secs = divmod(int(round(seconds / 10) * 10) if seconds < 600 else int(round(seconds / 60) * 60), 60)
        if secs:
            return _("{minutes} min {seconds} s", minutes=number(minutes), seconds=number(secs))
        return _("{minutes} min", minutes=number(minutes))
    hours, minutes = divmod(int(round(seconds / 60)), 60)
    if minutes:
        return _("{hours} h {minutes} min", hours=number(hours), minutes=number(minutes))
    return _("{hours} h", hours=number(hours))


ENCODINGS = {  # how a file's text encoding is named on screen
    "utf-8": "UTF-8",
    "utf-8-sig": "UTF-8",
    "utf-16": "UTF-16",
    "utf-16-le": "UTF-16",
    "utf-16-be": "UTF-16",
    "gbk": N_("Chinese (GBK)"),
    "gb2312": N_("Chinese (GBK)"),
    "gb18030": N_("Chinese (GBK)"),
    "big5": N_("Chinese (Big5)"),
    "cp1250": N_("Windows Central European"),
    "cp1251": N_("Windows Cyrillic"),
    "cp1252": N_("Windows Western European"),
    "latin_1": N_("Western European (Latin-1)"),
    "iso8859_1": N_("Western European (Latin-1)"),
    "shift_jis": N_("Japanese (Shift JIS)"),
    "cp932": N_("Japanese (Shift JIS)"),
}


def encoding_text(encoding: str | None) -> str:
    """A text encoding in words: 'utf-8-sig' -> 'UTF-8', 'cp1252' -> 'Windows Western European'."""
    key = (encoding or "").lower().replace("-", "_").replace("utf_", "utf-")
    name = ENCODINGS.get(key, ENCODINGS.get((encoding or "").lower()))
    return _(name) if name else encoding or _("unknown")


def percent(share: float | None) -> str:
    """A share (0-1) as the dashboard writes it everywhere: one decimal, e.g. '73.7 %' ('73.7%' in Chinese)."""
    return "–" if share is None else _("{number} %", number=number(100 * share, 1))


def in_percent(share: float | None) -> float | None:
    """A share as a number of percent, for tables whose column shows it with `ui.PERCENT_COLUMN` ('73.7 %')."""
    return None if share is None else 100 * share


def points(difference: float | None) -> str:
    """A difference of two shares in percentage points, signed: '+1.2 points'."""
    if difference is None:
        return "–"
    signed = ("+" if difference >= 0 else "-") + number(abs(100 * difference), 1)
    return _("{signed} points", signed=signed)


def count(n: int | None) -> str:
    return "–" if n is None else number(n)


def size_text(n_bytes: int | None) -> str:
    """Disk space as the dashboard writes it: '0.4 MB', '87 MB', '1.2 GB' (1 MB = 2**20 bytes, as model sizes)."""
    if n_bytes is None:
        return "–"
    mb = n_bytes / 2**20
    if not n_bytes:
        return "0 MB"
    if mb >= 1024:
        return _("{number} GB", number=number(mb / 1024, 1))
    return _("{number} MB", number=number(mb, 0 if mb >= 10 else 1))


def plural(n: int, word: str) -> str:
    """English only: a message being translated says its number with ngettext instead."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def plain_number(x: float) -> str:
    """A small number without scientific notation: 5e-05 -> '0.00005', 1.0 -> '1'."""
    return f"{x:.10f}".rstrip("0").rstrip(".") if x else "0"


def epochs_text(epochs: float | None) -> str:
    if epochs is None:
        return _("? epochs")
    return ngettext("{epochs} epoch", "{epochs} epochs", 1 if epochs == 1 else 2, epochs=plain_number(float(epochs)))


UTC_MARK = " (UTC)"  # ends the name of a table's column of stored times; in_time_zone renames it for the viewer


def time_zone(name: str | None) -> ZoneInfo | None:
    """The viewer's time zone from its name (the browser's, e.g. 'Asia/Shanghai'); None when it is not known, or
    not known to this machine: times then stay in UTC, and say so."""
    try:
        return ZoneInfo(name) if name else None
    except (ZoneInfoNotFoundError, ValueError):
        return None


def local_time(at: datetime | None, zone_name: str | None) -> datetime | None:
    """A stored time (UTC, without a zone, as the database keeps it) on the viewer's clock; UTC itself when the
    viewer's zone is not known."""
    zone = time_zone(zone_name)
    if at is None or zone is None:
        return at
    return at.replace(tzinfo=timezone.utc).astimezone(zone).replace(tzinfo=None)


def text_width(text: str) -> int:
    """How many Latin letters wide a text is, on a screen or a terminal: a Chinese character takes two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def time_pattern(with_date: bool = False) -> str:
    """How the reader's language writes a time of day (24-hour: 'HH:mm'), or a date and time ('MMM d, y, HH:mm':
    Dec 7, 2026, 14:05; 'y年M月d日 HH:mm': 2026年12月7日 14:05), as a Unicode (CLDR) pattern, from Babel's data."""
    from babel import Locale

    locale = Locale.parse(babel_locale())
    time = locale.datetime_skeletons["Hm"].pattern
    if not with_date:
        return time
    date = locale.datetime_skeletons["yMMMd"].pattern
    return str(locale.datetime_formats["medium"]).replace("{1}", date).replace("{0}", time)


def clock_text(at: datetime, zone_name: str | None, with_date: bool = False) -> str:
    """A stored time as the viewer reads it: '22:00' on their own clock ('Dec 7, 2026, 22:00' / '2026年12月7日 22:00'
    with its date), '14:00 UTC' when their zone is unknown."""
    from babel.dates import format_datetime

    shown = format_datetime(local_time(at, zone_name), time_pattern(with_date), locale=babel_locale())
    return shown + ("" if time_zone(zone_name) else " UTC")


def table_time_format(with_date: bool = False) -> str:
    """`time_pattern` as a table's time column takes it (st.column_config.DatetimeColumn: a moment.js format)."""
    tokens = {"y": "YYYY", "d": "D", "dd": "DD", "a": "A"}  # the rest (M, MMM, HH, mm) read the same in both
    out = []
    for match in re.finditer(r"'([^']*)'|([A-Za-z])\2*|[^A-Za-z']+", time_pattern(with_date)):
        quoted, letters = match.group(1), match.group(2)
        if quoted is not None:  # a literal: '' is a quote
            out.append(f"[{quoted}]" if quoted else "'")
        elif letters:
            out.append(tokens.get(match.group(0), tokens.get(letters, match.group(0))))
        else:
            out.append(match.group(0))
    return "".join(out)


def in_time_zone(frame: pd.DataFrame, zone_name: str | None) -> pd.DataFrame:
    """A table's stored times (its '... (UTC)' columns) on the viewer's clock, named without '(UTC)'; the table as
    it is when the viewer's zone is unknown."""
    import pandas as pd

    zone = time_zone(zone_name)
    stored = [c for c in frame.columns if str(c).endswith(UTC_MARK)]
    if zone is None or not stored:
        return frame
    frame = frame.copy()
    for column in stored:
        utc = pd.to_datetime(frame[column]).dt.tz_localize("UTC")
        frame[column] = utc.dt.tz_convert(zone).dt.tz_localize(None)
    return frame.rename(columns={c: c.removesuffix(UTC_MARK) for c in stored})
