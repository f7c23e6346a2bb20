"""CSV downloads that a spreadsheet opens safely."""

from __future__ import annotations

import csv
import re

import pandas as pd

_FORMULA_START = ("=", "+", "-", "@")  # OWASP's CSV-injection list, with tab and carriage return (below)
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")  # -3.5, +1e3: a spreadsheet reads a number


def _neutralise(value):
    # A text cell a spreadsheet would run as a formula when the file is opened (CSV injection: =, +, -, @, tab or
    # carriage return first, also after spaces) gets a leading apostrophe, which makes it plain text. A number
    # written as text (-3.5) runs nothing and stays as it is; a phone number (+44 20 7946 0958) is not a number, a
    # spreadsheet reads it as a formula (and shows an error), so it is neutralised too.
    if not isinstance(value, str) or not value:
        return value
    if value.startswith(("\t", "\r")) or (
        value.lstrip().startswith(_FORMULA_START) and not _NUMBER.fullmatch(value.strip())
    ):
        return "'" + value
    return value


def _neutralised(df: pd.DataFrame) -> pd.DataFrame:
    """Every cell and every column name neutralised (a header is a cell too)."""
    out = df.map(_neutralise)
    out.columns = [_neutralise(c) for c in df.columns]
    return out


def safe_csv(df: pd.DataFrame) -> bytes:
    """UTF-8 with BOM (so Excel reads Chinese correctly), every text cell and column name neutralised."""
    return (
        _neutralised(df).to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC).encode("utf-8-sig")
    )  # CR stays in its cell


def write_safe_csv(df: pd.DataFrame, f, header: bool) -> None:
    """One chunk of a CSV download, appended to a text file opened with encoding="utf-8-sig" and newline="" (the BOM
    is written once, at the start); cells neutralised as in safe_csv."""
    _neutralised(df).to_csv(f, index=False, header=header, quoting=csv.QUOTE_NONNUMERIC)
