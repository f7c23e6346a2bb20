"""CSV downloads that a spreadsheet opens safely."""

from __future__ import annotations

import csv

import pandas as pd

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _neutralise(value):
    # A text cell starting like a formula is run by Excel or LibreOffice when the file is opened (CSV injection);
    # a leading apostrophe makes it plain text.
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def safe_csv(df: pd.DataFrame) -> bytes:
    """UTF-8 with BOM (so Excel reads Chinese correctly), every text cell neutralised."""
    return (
        df.map(_neutralise).to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC).encode("utf-8-sig")
    )  # CR stays in its cell


def write_safe_csv(df: pd.DataFrame, f, header: bool) -> None:
    """One chunk of a CSV download, appended to a text file opened with encoding="utf-8-sig" and newline="" (the BOM
    is written once, at the start); cells neutralised as in safe_csv."""
    df.map(_neutralise).to_csv(f, index=False, header=header, quoting=csv.QUOTE_NONNUMERIC)
