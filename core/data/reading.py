"""Reading files as they come: decoding any text encoding (UTF-8 with or without BOM, GBK, UTF-16), parsing CSV and
plain text files, guessing the text and label columns, reading a class-names file.

A file that cannot be read raises DataError, its problems in plain words (file, row, column, what to do).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import charset_normalizer
import pandas as pd

from core.i18n import N_, _
from core.store.settings import Settings

SPLITS = ("train", "dev", "test")
SPLIT_NAMES = {"train": N_("train"), "dev": N_("dev"), "test": N_("test")}  # a split as a sentence names it
SEED_LAYOUT = ("0", "1")  # the seed article's CSVs: text in column "0", label in column "1"
_CJK = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]+")
CSV_CHUNK_ROWS = 5_000  # rows parsed at a time


class DataError(Exception):
    """Input that cannot be used; each problem is one plain-words sentence."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


@dataclass
class SplitFile:
    """One uploaded or local CSV: its display name and its bytes (or a path, read only after a size check)."""

    name: str
    data: bytes | Path

    def size(self) -> int:
        return self.data.stat().st_size if isinstance(self.data, Path) else len(self.data)

    def read(self) -> bytes:
        return self.data.read_bytes() if isinstance(self.data, Path) else self.data

    @classmethod
    def from_path(cls, path: str | Path) -> SplitFile:
        path = Path(path)
        if not path.is_file():
            raise DataError(_("{path}: no such file. Check the path.", path=path))
        return cls(path.name, path)


def _utf16_without_bom(raw: bytes) -> str | None:
    # UTF-16 text of mostly ASCII has a NUL in every other byte.
    sample = raw[:4096]
    if len(sample) < 4:
        return None
    for enc, zeros in (("utf-16-le", sample[1::2]), ("utf-16-be", sample[0::2])):
        if zeros.count(0) > 0.9 * len(zeros):
            try:
                return raw.decode(enc)
            except UnicodeDecodeError:
                return None
    return None


def _mixed_utf8(raw: bytes) -> tuple[int, int] | None:
    """(a UTF-8 line, a non-UTF-8 line) when a file mixes encodings, else None. Lines count from 1."""
    utf8_line = bad_line = None
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if line.isascii():
            continue
        try:
            line.decode("utf-8")
            utf8_line = utf8_line or number
        except UnicodeDecodeError:
            bad_line = bad_line or number
        if utf8_line and bad_line:
            return utf8_line, bad_line
    return None


def _mostly_chinese(text: str, sample: int = 200_000) -> bool:
    """Whether most non-ASCII characters (of the first `sample`) are Chinese; counted without a list per character."""
    head = text[:sample]
    non_ascii = len(head) - len(head.encode("ascii", "ignore"))
    return non_ascii > 0 and sum(map(len, _CJK.findall(head))) / non_ascii > 0.6


def decode(raw: bytes, name: str) -> tuple[str, str]:
    """Bytes to text, detecting UTF-8 (with or without BOM), UTF-16, GBK/GB18030 and other encodings."""
    if raw.startswith(b"PK\x03\x04"):
        raise DataError(
            _(
                "{file} is a ZIP archive (an Excel .xlsx file is one), not a CSV. "
                "Open it in your spreadsheet program and save it as 'CSV UTF-8'.",
                file=name,
            )
        )
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            pass
    if b"\x00" in raw:
        text = _utf16_without_bom(raw)
        if text is not None:
            return text, "utf-16"
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise DataError(
            _(
                "{file} line {line} contains NUL bytes, so it is a binary file or a damaged CSV, not a text CSV. "
                "Open it in your spreadsheet program and save it as 'CSV UTF-8'.",
                file=name,
                line=line,
            )
        )
    try:
        return raw.decode("utf-8-sig"), ("utf-8-sig" if raw.startswith(b"\xef\xbb\xbf") else "utf-8")
    except UnicodeDecodeError:
        mixed = _mixed_utf8(raw)
    if mixed:
        raise DataError(
            _(
                "{file} mixes text encodings: line {utf8_line} is UTF-8 but line {other_line} is not. "
                "Open it in a text editor and save it all as UTF-8.",
                file=name,
                utf8_line=mixed[0],
                other_line=mixed[1],
            )
        )
    # Chinese Excel saves CSVs as GBK; GB18030 is its superset. Accept it only when it yields Chinese text,
    # so that a Western file is not read as gibberish.
    try:
        text = raw.decode("gb18030")
        if _mostly_chinese(text):
            return text, "gbk"
    except UnicodeDecodeError:
        pass
    best = charset_normalizer.from_bytes(raw).best()
    if best is None:
        raise DataError(
            _(
                "{file}: the text encoding could not be recognised. Save the file as 'CSV UTF-8' and upload again.",
                file=name,
            )
        )
    return str(best), best.encoding


def _delimiter(text: str) -> str:
    """Comma, or the semicolon / tab / bar that a spreadsheet in another locale writes."""
    end = text.find("\n")
    header = text[: end if end >= 0 else None]  # not text.split: that copies the whole file
    counts = {d: header.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=counts.get)
    return best if counts[best] and counts[","] == 0 else ","


def _parse_csv(file: SplitFile, settings: Settings) -> tuple[pd.DataFrame, str]:
    """Parse one CSV into a table of strings (any number of columns). Returns the table and the encoding found."""
    raw = _read_bytes(file, settings)
    text, encoding = decode(raw, file.name)
    sep = _delimiter(text)
    # pandas parses UTF-8 bytes in C; the decoded text is only kept when the file was in another encoding.
    if encoding in ("utf-8", "utf-8-sig"):
        del text
        utf8 = raw[3:] if encoding == "utf-8-sig" else raw
    else:
        utf8 = text.encode("utf-8")
        del text
    try:
        # In chunks: the parser holds a Python object per cell of a chunk only; the columns are kept as Arrow strings.
        chunks = pd.read_csv(
            io.BytesIO(utf8),
            sep=sep,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            nrows=settings.max_rows + 1,
            encoding="utf-8",
            chunksize=CSV_CHUNK_ROWS,
        )
        with chunks:
            df = pd.concat(list(chunks), ignore_index=True)
    except pd.errors.EmptyDataError:
        raise DataError(_("{file} is empty. Choose the file that holds the rows.", file=file.name)) from None
    except pd.errors.ParserError as e:
        match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
        if match:
            want, line, saw = match.groups()
            raise DataError(
                _(
                    "{file} line {line}: {saw} fields where the header has {want}. "
                    "A text that contains a comma must be wrapped in double quotes; fix that line and upload again.",
                    file=file.name,
                    line=line,
                    saw=saw,
                    want=want,
                )
            ) from None
        raise DataError(
            _("{file} could not be read as a CSV ({why}). Save it as 'CSV UTF-8'.", file=file.name, why=e)
        ) from None
    if df.empty:
        raise DataError(_("{file} has a header but no rows.", file=file.name))
    _check_row_count(file.name, len(df), settings)
    return df, encoding


def _read_bytes(file: SplitFile, settings: Settings) -> bytes:
    limit = settings.max_upload_mb * 1024 * 1024
    if file.size() > limit:
        raise DataError(
            _(
                "{file} is {size} MB; the limit is {limit} MB. Use a smaller sample, or raise LORALAB_MAX_UPLOAD_MB.",
                file=file.name,
                size=f"{file.size() / 2**20:.0f}",
                limit=settings.max_upload_mb,
            )
        )
    raw = file.read()
    if not raw.strip():
        raise DataError(_("{file} is empty. Choose the file that holds the rows.", file=file.name))
    return raw


def _check_row_count(name: str, rows: int, settings: Settings) -> None:
    if rows > settings.max_rows:
        raise DataError(
            _(
                "{file} has more than {limit} rows, the limit. Use a sample, or raise LORALAB_MAX_ROWS.",
                file=name,
                limit=f"{settings.max_rows:,}",
            )
        )


def read_table(file: SplitFile, settings: Settings) -> tuple[pd.DataFrame, str]:
    """Parse one dataset CSV into a table of strings. Returns the table and the encoding found."""
    df, encoding = _parse_csv(file, settings)
    if len(df.columns) < 2:
        raise DataError(
            _(
                "{file} has only one column ({column}). "
                "A dataset needs a text column and a label column, separated by commas.",
                file=file.name,
                column=", ".join(map(str, df.columns)),
            )
        )
    return df, encoding


PLAIN_TEXT_COLUMN = "text"  # the one column of a plain text file, one text a line


@dataclass
class TextFile:
    """A file of texts to label, as read: every column kept, as strings."""

    name: str
    frame: pd.DataFrame
    encoding: str
    plain: bool  # a plain text file (one text a line, no header), not a CSV


def read_text_file(file: SplitFile, settings: Settings) -> TextFile:
    """A file of texts to label: a CSV with any columns (.csv and anything else), or a plain text file (.txt) with one
    text a line. The same decoding and limits as a dataset's CSVs."""
    if not file.name.lower().endswith(".txt"):
        df, encoding = _parse_csv(file, settings)
        return TextFile(file.name, df, encoding, plain=False)
    text, encoding = decode(_read_bytes(file, settings), file.name)
    lines = text.rstrip().splitlines()  # blank lines at the end are not texts
    del text
    _check_row_count(file.name, len(lines), settings)
    return TextFile(file.name, pd.DataFrame({PLAIN_TEXT_COLUMN: pd.Series(lines, dtype="str")}), encoding, plain=True)


def guess_columns(columns: list[str]) -> tuple[str, str]:
    """The seed layout ("0" text, "1" label) when present, else common names, else the first two columns."""
    cols = [str(c) for c in columns]
    if all(c in cols for c in SEED_LAYOUT):
        return SEED_LAYOUT
    lower = {c.lower(): c for c in cols}
    text = next((lower[n] for n in ("text", "sentence", "title", "content", "review") if n in lower), cols[0])
    label = next((lower[n] for n in ("label", "labels", "class", "category", "target") if n in lower), None)
    if label is None:
        label = next(c for c in cols if c != text)
    return text, label


def read_class_names(raw: bytes | None, name: str = "classes.txt") -> list[str] | None:
    """A classes.txt-style list: line i names integer label i."""
    if not raw:
        return None
    text, __ = decode(raw, name)
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    first: dict[str, int] = {}
    for number, class_name in lines:
        if class_name in first:  # two labels of one name could not be told apart on any page or in any score
            raise DataError(
                _(
                    "{file}: lines {first} and {second} both say '{name}'. Line i names label i, so "
                    "each label needs a name of its own: rename one of them.",
                    file=name,
                    first=first[class_name],
                    second=number,
                    name=class_name,
                )
            )
        first[class_name] = number
    return [class_name for __, class_name in lines] or None


def files_from_folder(folder: str | Path) -> dict[str, SplitFile]:
    """train.csv / dev.csv / test.csv in one folder (dev may be named val.csv or valid.csv)."""
    folder = Path(folder)
    found = {}
    for split, names in {"train": ["train"], "dev": ["dev", "val", "valid"], "test": ["test"]}.items():
        path = next((folder / f"{n}.csv" for n in names if (folder / f"{n}.csv").is_file()), None)
        if path is not None:
            found[split] = SplitFile.from_path(path)
    return found
