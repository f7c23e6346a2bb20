"""Reading, checking and storing train / dev / test CSVs.

Every problem is collected and reported in plain words (file, row, column, what to do) before anything
is stored; a dataset is stored whole or not at all.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import charset_normalizer
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import storage
from core.db import Dataset, new_uid
from core.settings import PROJECT_ROOT, Settings

SPLITS = ("train", "dev", "test")
SEED_LAYOUT = ("0", "1")  # the seed article's CSVs: text in column "0", label in column "1"
_INT_LABEL = re.compile(r"^[+-]?\d+$")
_FLOAT_LABEL = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_INTEGRAL_FLOAT = re.compile(r"^[+-]?\d+(\.0*)?$")
_DOT_ZEROS = r"\.0*$"
_CJK = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]+")
CSV_CHUNK_ROWS = 5_000  # rows parsed at a time
LENGTH_SAMPLE = 500  # texts tokenized per split to warn about texts the model will cut
MAX_LISTED = 5  # rows named per kind of problem; the rest are counted
DEMO_DIR = PROJECT_ROOT / "assets" / "demo"  # BBC News titles, 5 classes, in the seed layout
DEMO_NAME = "BBC News titles (demo)"


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
            raise DataError(f"{path}: no such file. Check the path.")
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
            f"{name} is a ZIP archive (an Excel .xlsx file is one), not a CSV. "
            "Open it in your spreadsheet program and save it as 'CSV UTF-8'."
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
            f"{name} line {line} contains NUL bytes, so it is a binary file or a damaged CSV, not a text CSV. "
            "Open it in your spreadsheet program and save it as 'CSV UTF-8'."
        )
    try:
        return raw.decode("utf-8-sig"), ("utf-8-sig" if raw.startswith(b"\xef\xbb\xbf") else "utf-8")
    except UnicodeDecodeError:
        mixed = _mixed_utf8(raw)
    if mixed:
        raise DataError(
            f"{name} mixes text encodings: line {mixed[0]} is UTF-8 but line {mixed[1]} is not. "
            "Open it in a text editor and save it all as UTF-8."
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
            f"{name}: the text encoding could not be recognised. Save the file as 'CSV UTF-8' and upload again."
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
        raise DataError(f"{file.name} is empty. Choose the file that holds the rows.") from None
    except pd.errors.ParserError as e:
        match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
        if match:
            want, line, saw = match.groups()
            raise DataError(
                f"{file.name} line {line}: {saw} fields where the header has {want}. "
                "A text that contains a comma must be wrapped in double quotes; fix that line and upload again."
            ) from None
        raise DataError(f"{file.name} could not be read as a CSV ({e}). Save it as 'CSV UTF-8'.") from None
    if df.empty:
        raise DataError(f"{file.name} has a header but no rows.")
    _check_row_count(file.name, len(df), settings)
    return df, encoding


def _read_bytes(file: SplitFile, settings: Settings) -> bytes:
    limit = settings.max_upload_mb * 1024 * 1024
    if file.size() > limit:
        raise DataError(
            f"{file.name} is {file.size() / 2**20:.0f} MB; the limit is {settings.max_upload_mb} MB. "
            "Use a smaller sample, or raise LORALAB_MAX_UPLOAD_MB."
        )
    raw = file.read()
    if not raw.strip():
        raise DataError(f"{file.name} is empty. Choose the file that holds the rows.")
    return raw


def _check_row_count(name: str, rows: int, settings: Settings) -> None:
    if rows > settings.max_rows:
        raise DataError(
            f"{name} has more than {settings.max_rows:,} rows, the limit. Use a sample, or raise LORALAB_MAX_ROWS."
        )


def read_table(file: SplitFile, settings: Settings) -> tuple[pd.DataFrame, str]:
    """Parse one dataset CSV into a table of strings. Returns the table and the encoding found."""
    df, encoding = _parse_csv(file, settings)
    if len(df.columns) < 2:
        raise DataError(
            f"{file.name} has only one column ({', '.join(map(str, df.columns))}). "
            "A dataset needs a text column and a label column, separated by commas."
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

    def row_name(self, i: int) -> str:
        """Row i as the person sees it in their file: a CSV's header is row 1; a text file's first line is line 1."""
        return f"line {i + 1}" if self.plain else f"row {i + 2}"


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


def text_problems(name: str, texts: pd.Series, column: str, settings: Settings, plain: bool = False) -> list[str]:
    """Empty and overlong texts, named by row as the Data page names them."""
    problems = []
    column_part = "" if plain else f", column '{column}'"
    values = pa.array(texts)  # no copy of Arrow strings; Arrow's whitespace is Python's str.strip()'s
    blank = pc.or_(pc.equal(pc.binary_length(values), 0), pc.utf8_is_space(values))
    empty = pd.Series(blank.to_numpy(zero_copy_only=False), texts.index)  # no stripped copy of every text
    if empty.any():
        problems.append(
            f"{name} {_rows(texts.index[empty], plain)}{column_part}: the text is empty. Fill it in or delete the row."
        )
    too_long = texts.str.len() > settings.max_text_chars
    if too_long.any():
        problems.append(
            f"{name} {_rows(texts.index[too_long], plain)}{column_part}: the text is longer than "
            f"{settings.max_text_chars:,} characters. Is this the right column? The model reads only the first "
            "few hundred words of a text; shorten these texts."
        )
    return problems


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
    text, _ = decode(raw, name)
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    first: dict[str, int] = {}
    for number, class_name in lines:
        if class_name in first:  # two labels of one name could not be told apart on any page or in any score
            raise DataError(
                f"{name}: lines {first[class_name]} and {number} both say '{class_name}'. Line i names label i, so "
                "each label needs a name of its own: rename one of them."
            )
        first[class_name] = number
    return [class_name for _, class_name in lines] or None


@dataclass
class DatasetCheck:
    """What checking three CSVs found. `errors` empty means it can be stored."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # as read, for previews
    splits: dict[str, pd.DataFrame] = field(default_factory=dict)  # columns text, label (class id)
    classes: list[str] = field(default_factory=list)
    label_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    source: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors and set(self.splits) == set(SPLITS)


def _rows(index: pd.Index, plain: bool = False) -> str:
    # Row numbers as a spreadsheet shows them: the header is row 1. A plain text file has lines, no header.
    rows = [str(i + (1 if plain else 2)) for i in index[:MAX_LISTED]]
    more = f" and {len(index) - MAX_LISTED} more" if len(index) > MAX_LISTED else ""
    word = "line" if plain else "row"
    return (word if len(index) == 1 else word + "s") + " " + ", ".join(rows) + more


def check_dataset(
    files: dict[str, SplitFile],
    settings: Settings,
    text_column: str | None = None,
    label_column: str | None = None,
    class_names: list[str] | None = None,
    tokenizer=None,
    max_length: int = 64,
    warn: bool = True,
) -> DatasetCheck:
    """Read and check train / dev / test; collect every problem rather than stopping at the first. warn=False
    leaves out the warnings that compare the splits (check_one_file warns after splitting)."""
    check = DatasetCheck()
    read: dict[int, tuple[pd.DataFrame, str]] = {}  # one file given for several splits is read once
    for split in SPLITS:
        if split not in files:
            check.errors.append(f"No {split} file was given. Upload a CSV for {split}.")
            continue
        try:
            if id(files[split]) not in read:
                read[id(files[split])] = read_table(files[split], settings)
            check.tables[split], encoding = read[id(files[split])]
            check.source[split] = {"file": files[split].name, "encoding": encoding}
        except DataError as e:
            check.errors.extend(e.problems)
    if not check.tables:
        return check

    first = next(iter(check.tables.values()))
    guessed = guess_columns(list(first.columns))
    text_column, label_column = text_column or guessed[0], label_column or guessed[1]
    check.source["columns"] = {"text": text_column, "label": label_column}
    if text_column == label_column:
        check.errors.append(
            f"The text column and the label column are both '{text_column}'. Pick two different columns."
        )
        return check

    raw_labels: dict[str, pd.Series] = {}
    texts: dict[str, pd.Series] = {}
    for split, df in check.tables.items():
        name = files[split].name
        missing = [c for c in (text_column, label_column) if c not in df.columns]
        if missing:
            check.errors.append(
                f"{name} has no column {', '.join(repr(c) for c in missing)}. Its columns are "
                f"{', '.join(repr(str(c)) for c in df.columns)}: pick the text and label columns."
            )
            continue
        text = df[text_column].astype(str)
        label = df[label_column].astype(str).str.strip()
        check.errors.extend(text_problems(name, text, text_column, settings))
        empty_label = label == ""
        if empty_label.any():
            check.errors.append(
                f"{name} {_rows(df.index[empty_label])}, column '{label_column}': the label is missing. "
                "Give every row a label or delete the row."
            )
        texts[split], raw_labels[split] = text, label

    if "train" not in raw_labels or check.errors:
        return check

    # One label map for all splits, built from train.
    all_labels = pd.concat(raw_labels.values())
    if all_labels.str.match(_FLOAT_LABEL).all() and not all_labels.str.match(_INT_LABEL).all():
        fractional = all_labels[~all_labels.str.match(_INTEGRAL_FLOAT)]
        if len(fractional):
            check.errors.append(
                f"Column '{label_column}' holds numbers such as '{fractional.iloc[0]}', not classes. "
                "A classifier needs whole-number or named labels; is this a score column?"
            )
            return check
        check.warnings.append(f"Labels written like '{all_labels.iloc[0]}' were read as whole numbers.")
        raw_labels = {k: v.str.replace(_DOT_ZEROS, "", regex=True) for k, v in raw_labels.items()}
        all_labels = pd.concat(raw_labels.values())
    integer = bool(all_labels.str.match(_INT_LABEL).all())
    values = sorted(raw_labels["train"].unique().tolist(), key=int if integer else str)
    if len(values) < 2:
        check.errors.append(
            f"{files['train'].name}: every row has the label '{values[0]}'. A classifier needs at least 2 classes."
        )
        return check
    for split in ("dev", "test"):
        if split not in raw_labels:
            continue
        unseen = ~raw_labels[split].isin(values)
        if unseen.any():
            labels = ", ".join(repr(v) for v in sorted(set(raw_labels[split][unseen]))[:MAX_LISTED])
            check.errors.append(
                f"{files[split].name} {_rows(raw_labels[split].index[unseen])}, column '{label_column}': "
                f"label {labels} never appears in train, so the model cannot learn it. "
                "Add examples of it to train or remove these rows."
            )
    if integer and class_names is not None:
        too_big = [v for v in values if not 0 <= int(v) < len(class_names)]
        if too_big:
            check.errors.append(
                f"The class-name list has {len(class_names)} names, but label {too_big[0]} needs name number "
                f"{int(too_big[0]) + 1}. Line i of the list names label i, starting from 0."
            )
    if check.errors:
        return check

    check.classes = [class_names[int(v)] if integer and class_names else str(v) for v in values]
    for split in SPLITS:
        labels = pa.array(raw_labels[split])  # each label's class id in Arrow: no Python object per row
        ids = pc.index_in(labels, value_set=pa.array(values, labels.type)).to_numpy(zero_copy_only=False)
        check.splits[split] = pd.DataFrame({"text": texts[split].values, "label": ids.astype(int)})
        counts = np.bincount(ids, minlength=len(values))
        check.label_counts[split] = {check.classes[i]: int(counts[i]) for i in range(len(values))}

    if warn:
        check.warnings.extend(_warnings(check, files, tokenizer, max_length))
    return check


SHARES = (80, 10, 10)  # train / dev / test, percent, when one file is split


def split_stratified(labels: np.ndarray, shares=SHARES, seed: int = 0) -> dict[str, np.ndarray]:
    """Row indices of train / dev / test: each class's rows shuffled (seeded) and cut by the shares, so every
    split has the classes in the file's proportions. Counts are rounded by largest remainder; a class with rows
    enough gets at least one in each split."""
    rng = np.random.default_rng(seed)
    fractions = np.asarray(shares, dtype=float) / sum(shares)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        exact = fractions * len(rows)
        counts = np.floor(exact).astype(int)
        counts[np.argsort(counts - exact, kind="stable")[: len(rows) - counts.sum()]] += 1
        for k in (2, 1):  # take a row from the largest split for a split left without this class
            if counts[k] == 0 and counts.max() > 1:
                counts[k], counts[np.argmax(counts)] = 1, counts.max() - 1
        for split, part in zip(SPLITS, np.split(rows, np.cumsum(counts)[:-1])):
            parts[split].append(part)
    return {split: np.sort(np.concatenate(p)) for split, p in parts.items()}


def check_one_file(
    file: SplitFile,
    settings: Settings,
    text_column: str | None = None,
    label_column: str | None = None,
    class_names: list[str] | None = None,
    tokenizer=None,
    max_length: int = 64,
    shares=SHARES,
    seed: int = 0,
) -> DatasetCheck:
    """One labelled file, checked as a whole (problems name its own rows), then split into train / dev / test,
    stratified by class (split_stratified). The split is what gets stored, so every run on it sees the same texts."""
    shares = tuple(shares)
    if len(shares) != 3 or any(not 0 < s < 100 for s in shares):
        return DatasetCheck(errors=["Give train, dev and test each a share between 1 and 99 percent."])
    check = check_dataset(
        dict.fromkeys(SPLITS, file), settings, text_column, label_column, class_names, None, max_length, False
    )
    check.errors = list(dict.fromkeys(check.errors))  # the file stood for all three splits: each problem once
    if check.tables:
        check.tables = {"file": check.tables["train"]}
        check.source = {"file": check.source["train"], **{k: v for k, v in check.source.items() if k not in SPLITS}}
    if check.errors:
        check.splits = {}
        return check
    whole = check.splits["train"]
    counts = whole["label"].value_counts()
    few = [check.classes[i] for i, n in counts.items() if n < 3]
    if few:
        check.errors.append(
            f"{file.name}: class {', '.join(repr(c) for c in few[:MAX_LISTED])} has fewer than 3 rows, so it cannot "
            "be in train, dev and test all three. Add rows of it, or remove them."
        )
        check.splits = {}
        return check
    parts = split_stratified(whole["label"].to_numpy(), shares, seed)
    check.splits = {split: whole.iloc[rows].reset_index(drop=True) for split, rows in parts.items()}
    check.label_counts = {
        split: {c: int((df["label"] == i).sum()) for i, c in enumerate(check.classes)}
        for split, df in check.splits.items()
    }
    for split in SPLITS:
        check.source[split] = {"file": f"{file.name} ({split} part)", "encoding": check.source["file"]["encoding"]}
    check.source["split"] = {"file": file.name, "shares": list(shares), "seed": seed}
    named = {split: SplitFile(check.source[split]["file"], b"") for split in SPLITS}
    check.warnings.extend(_warnings(check, named, tokenizer, max_length, split_here=True))
    return check


def _same_files(files: dict[str, SplitFile]) -> list[list[str]]:
    """Groups of splits that were given the very same file."""
    boxes: dict[bytes, list[str]] = {}
    for split, file in files.items():
        boxes.setdefault(hashlib.sha256(file.read()).digest(), []).append(split)
    return [splits for splits in boxes.values() if len(splits) > 1]


_SPLIT_WORDS = {"train": ("train",), "dev": ("dev", "val"), "test": ("test",)}


def _swapped(check: DatasetCheck, files: dict[str, SplitFile]) -> list[str]:
    """Files that look as if they were given for the wrong split: a name that says another split, or a dev or test
    set larger than train."""
    out = []
    for split, file in files.items():
        stem = Path(file.name).stem.lower()
        says = [other for other, words in _SPLIT_WORDS.items() if any(w in stem for w in words)]
        if says and split not in says:
            out.append(
                f"{file.name} was given for {split}, but its name says {says[0]}: were the files put in the wrong "
                "boxes?"
            )
    train_rows = len(check.splits["train"])
    for split in ("dev", "test"):
        rows = len(check.splits[split])
        if rows > train_rows:
            out.append(
                f"The {split} file {files[split].name} ({rows:,} rows) is larger than the train file "
                f"{files['train'].name} ({train_rows:,} rows). Train is usually the largest: were the files put in "
                "the wrong boxes?"
            )
    return out


def _warnings(
    check: DatasetCheck, files: dict[str, SplitFile], tokenizer, max_length: int, split_here: bool = False
) -> list[str]:
    """split_here: the three parts were cut from one file by check_one_file, so they are not the same file and
    cannot be in the wrong boxes (each part's name holds the file's, which may say 'train')."""
    out, repeated = [], set()
    for splits in [] if split_here else _same_files(files):
        names = ", ".join(s for s in splits[:-1]) + f" and {splits[-1]}"
        out.append(
            f"The same file ({files[splits[0]].name}) was given for {names}. Each needs its own texts: train to learn "
            "from, dev to check the model while it learns, test to score it at the end; scores on texts the model "
            "learnt from look better than they are. Pick the right file for each."
        )
        repeated |= set(splits) if "train" in splits else set()
    out += [] if split_here else _swapped(check, files)
    train_counts = check.label_counts["train"]
    biggest, smallest = max(train_counts, key=train_counts.get), min(train_counts, key=train_counts.get)
    if train_counts[smallest] * 10 <= train_counts[biggest]:
        out.append(
            f"Heavy class imbalance in train: '{biggest}' has {train_counts[biggest]} rows, '{smallest}' has "
            f"{train_counts[smallest]}. Accuracy can look good while rare classes are never predicted: "
            "compare macro-F1 too."
        )
    for split in ("dev", "test"):
        missing = [c for c, n in check.label_counts[split].items() if n == 0]
        if missing:
            names = ", ".join(f"'{c}'" for c in missing[:MAX_LISTED])
            names += " and more" if len(missing) > MAX_LISTED else ""
            out.append(
                f"{files[split].name} has no rows of class {names} (train has them): its scores say nothing about "
                f"{'that class' if len(missing) == 1 else 'those classes'}, and its macro-F1 averages over the "
                "other classes. Move some rows of each class into it if you can."
            )
    train_texts = pa.array(check.splits["train"]["text"])
    for split in ("dev", "test"):
        texts = check.splits[split]["text"]
        # Arrow's hash join in C++ (pandas' isin on these strings walks them in Python), hashing the smaller side
        # first: a hash set of every training text costs several times the file.
        in_train = train_texts.filter(pc.is_in(train_texts, value_set=pa.array(texts)))
        shared = pd.Series(pc.is_in(pa.array(texts), value_set=in_train).to_numpy(zero_copy_only=False), texts.index)
        if shared.any() and split not in repeated:  # the very same file is said above
            out.append(
                f"{int(shared.sum())} texts in {files[split].name} also appear in {files['train'].name} "
                f"({_rows(check.splits[split].index[shared])}): scores on {split} will look better than they are."
            )
    if tokenizer is not None:
        for split, df in check.splits.items():
            cut, looked = count_longer(tokenizer, df["text"], max_length)
            if cut:
                share = f"{cut / looked:.0%} of {files[split].name} texts ({cut} of {looked})"
                if looked < len(df):
                    share = f"About {share[:-1]} looked at, spread over its {len(df):,} rows)"
                out.append(f"{share} are longer than {max_length} tokens; training will cut them at {max_length}.")
    return out


def spread_sample(texts: pd.Series, sample: int = LENGTH_SAMPLE) -> list[str]:
    """Every text of a small split, an evenly spread sample of `sample` texts of a larger one: what is tokenized to
    warn about the data. Tokenizing every row would take longer than the rest of the check together."""
    rows = np.linspace(0, len(texts) - 1, sample).astype(int) if len(texts) > sample else range(len(texts))
    return [texts.iat[i] for i in rows]  # one by one: a fancy index would first join the Arrow chunks (a copy)


def count_longer(tokenizer, texts: pd.Series, max_length: int, sample: int = LENGTH_SAMPLE) -> tuple[int, int]:
    """(texts longer than max_length tokens, texts looked at), on the texts of `spread_sample`."""
    looked = spread_sample(texts, sample)
    ids = tokenizer(looked, truncation=False, return_attention_mask=False, return_token_type_ids=False)
    return sum(len(i) > max_length for i in ids["input_ids"]), len(looked)


def content_hash(check: DatasetCheck, chunk: int = 100_000) -> str:
    """The same hash as the whole splits' CSV text, computed a chunk of rows at a time."""
    h = hashlib.sha256(json.dumps(check.classes, ensure_ascii=False).encode())
    for split in SPLITS:
        df = check.splits[split]
        for start in range(0, max(len(df), 1), chunk):
            h.update(df.iloc[start : start + chunk].to_csv(index=False, header=start == 0).encode())
    return h.hexdigest()


def save_dataset(session: Session, settings: Settings, check: DatasetCheck, name: str) -> Dataset:
    """Store a checked dataset: files written to a temporary folder and moved into place, then the row committed.

    A failure at any point leaves neither files nor a row behind.
    """
    if not check.ok:
        raise DataError(check.errors or ["The dataset has not been checked."])
    name = name.strip()
    if not name:
        raise DataError("Give the dataset a name.")
    if len(name) > 100 or ".." in name or any(c in name for c in "/\\") or not name.isprintable():
        raise DataError(
            f"The dataset name '{name[:100]}' cannot be used: use up to 100 letters, digits, spaces, '-' or '_', "
            "without '/', '\\' or '..'."
        )
    if session.scalar(select(Dataset.id).where(Dataset.name == name)) is not None:
        raise DataError(f"A dataset named '{name}' already exists. Choose another name.")
    storage.use_data_folder(settings)  # the data folder records this database before it holds its files
    settings.datasets_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=settings.datasets_dir))
    final = None
    try:
        for split in SPLITS:
            # Every text in quotes: a bare carriage return (or any line break) inside one stays part of the text.
            path = tmp / f"{split}.csv"
            check.splits[split].to_csv(path, index=False, encoding="utf-8", quoting=csv.QUOTE_NONNUMERIC)
            _check_stored(path, check.splits[split], check.source.get(split, {}).get("file", split))
        (tmp / "classes.json").write_text(json.dumps(check.classes, ensure_ascii=False), encoding="utf-8")
        dataset = Dataset(
            uid=new_uid(),
            name=name,
            content_hash=content_hash(check),
            path="",
            classes=check.classes,
            sizes={s: len(check.splits[s]) for s in SPLITS},
            label_counts=check.label_counts,
            warnings=check.warnings,
            source=check.source,
        )
        session.add(dataset)
        session.flush()  # assigns the id
        # Named by id and uid: ids start again at 1 in a new database on the same data folder, and an existing folder
        # (another database's dataset) is never replaced.
        target = settings.datasets_dir / f"{dataset.id}-{dataset.uid}"
        if target.exists():
            raise DataError(f"{target} already exists; nothing was saved. Try again.")
        tmp.rename(target)
        final = target
        dataset.path = str(final.relative_to(settings.data_dir))
        session.commit()
        return dataset
    except BaseException:
        session.rollback()
        shutil.rmtree(tmp, ignore_errors=True)
        if final is not None:
            shutil.rmtree(final, ignore_errors=True)
        raise


def find_same_dataset(session: Session, check: DatasetCheck) -> Dataset | None:
    return session.scalars(select(Dataset).where(Dataset.content_hash == content_hash(check))).first()


def _read_stored(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"text": str, "label": int}, keep_default_na=False, encoding="utf-8")


def _check_stored(path: Path, expected: pd.DataFrame, name: str) -> None:
    """Read a stored split back as training will, and refuse to store it unless every row comes back as it was."""
    try:
        back = _read_stored(path)
    except (ValueError, pd.errors.ParserError) as e:
        raise DataError(f"{name} could not be stored so that it reads back ({e}). Nothing was saved.") from None
    if len(back) != len(expected):
        raise DataError(f"{name} read back with {len(back)} rows instead of {len(expected)}. Nothing was saved.")
    # Compared column against column (in Arrow), not row by row in Python.
    texts_same = back["text"].reset_index(drop=True).eq(expected["text"].reset_index(drop=True))
    same = texts_same.to_numpy(dtype=bool) & (back["label"].to_numpy() == expected["label"].to_numpy())
    differ = np.flatnonzero(~same)
    if len(differ):
        raise DataError(
            f"{name} {_rows(pd.Index(differ))}: the text did not read back as it was stored, so nothing was saved. "
            "Remove unusual control characters from these texts and upload again."
        )


def load_split(settings: Settings, dataset: Dataset, split: str) -> pd.DataFrame:
    path = settings.data_dir / dataset.path / f"{split}.csv"
    if not path.is_file():
        raise DataError(
            f"The {split} split of dataset '{dataset.name}' is missing: no file at {path}. When runs train on "
            "other machines (a Ray cluster), LORALAB_DATA_DIR must be a folder every machine mounts at the same path."
        )
    return _read_stored(path)


def delete_dataset(session: Session, settings: Settings, dataset: Dataset) -> None:
    """Remove the row, then the files. Runs keep their history (dataset name is copied on the run)."""
    folder = settings.data_dir / dataset.path
    session.delete(dataset)
    session.commit()
    shutil.rmtree(folder, ignore_errors=True)


def files_from_folder(folder: str | Path) -> dict[str, SplitFile]:
    """train.csv / dev.csv / test.csv in one folder (dev may be named val.csv or valid.csv)."""
    folder = Path(folder)
    found = {}
    for split, names in {"train": ["train"], "dev": ["dev", "val", "valid"], "test": ["test"]}.items():
        path = next((folder / f"{n}.csv" for n in names if (folder / f"{n}.csv").is_file()), None)
        if path is not None:
            found[split] = SplitFile.from_path(path)
    return found


def demo_files() -> tuple[dict[str, SplitFile], list[str] | None]:
    """The bundled demo set: its three CSVs and its class names."""
    return files_from_folder(DEMO_DIR), read_class_names((DEMO_DIR / "classes.txt").read_bytes())


def add_demo_dataset(session: Session, settings: Settings) -> Dataset:
    """Store the demo set (or return it if the same data is stored already), so a first run needs no upload."""
    files, names = demo_files()
    check = check_dataset(files, settings, class_names=names)
    existing = find_same_dataset(session, check)
    if existing is not None:
        return existing
    name = DEMO_NAME
    taken = set(session.scalars(select(Dataset.name)))
    for i in range(2, 1000):
        if name not in taken:
            break
        name = f"{DEMO_NAME} {i}"
    return save_dataset(session, settings, check, name)
