"""Checking a dataset before it is saved: every problem in plain words, naming the file, row and column."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from core.data.reading import SPLIT_NAMES, SPLITS, DataError, SplitFile, guess_columns, read_table
from core.data.splitting import SHARES, split_stratified
from core.i18n import _, ngettext
from core.store.settings import Settings

_INT_LABEL = re.compile(r"^[+-]?\d+$")
_FLOAT_LABEL = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_INTEGRAL_FLOAT = re.compile(r"^[+-]?\d+(\.0*)?$")
_DOT_ZEROS = r"\.0*$"
LENGTH_SAMPLE = 500  # texts tokenized per split to warn about texts the model will cut
MAX_LISTED = 5  # rows named per kind of problem; the rest are counted


def text_problems(name: str, texts: pd.Series, column: str, settings: Settings, plain: bool = False) -> list[str]:
    """Empty and overlong texts, named by row as the Data page names them."""
    problems = []
    values = pa.array(texts)  # no copy of Arrow strings; Arrow's whitespace is Python's str.strip()'s
    blank = pc.or_(pc.equal(pc.binary_length(values), 0), pc.utf8_is_space(values))
    empty = pd.Series(blank.to_numpy(zero_copy_only=False), texts.index)  # no stripped copy of every text
    if empty.any():
        rows = rows_of(texts.index[empty], plain)
        problems.append(
            _("{file} {rows}: the text is empty. Fill it in or delete the row.", file=name, rows=rows)
            if plain
            else _(
                "{file} {rows}, column '{column}': the text is empty. Fill it in or delete the row.",
                file=name,
                rows=rows,
                column=column,
            )
        )
    too_long = texts.str.len() > settings.max_text_chars
    if too_long.any():
        rows, limit = rows_of(texts.index[too_long], plain), f"{settings.max_text_chars:,}"
        problems.append(
            _(
                "{file} {rows}: the text is longer than {limit} characters. Is this the right column? The model "
                "reads only the first few hundred words of a text; shorten these texts.",
                file=name,
                rows=rows,
                limit=limit,
            )
            if plain
            else _(
                "{file} {rows}, column '{column}': the text is longer than {limit} characters. Is this the right "
                "column? The model reads only the first few hundred words of a text; shorten these texts.",
                file=name,
                rows=rows,
                column=column,
                limit=limit,
            )
        )
    return problems


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


def rows_of(index: pd.Index, plain: bool = False) -> str:
    # Row numbers as a spreadsheet shows them: the header is row 1. A plain text file has lines, no header.
    # Translators: ", " separates the row numbers of a list (2, 3, 4).
    rows = _(", ").join(str(i + (1 if plain else 2)) for i in index[:MAX_LISTED])
    if len(index) > MAX_LISTED:
        more = str(len(index) - MAX_LISTED)
        if plain:
            return _("lines {rows} and {more} more", rows=rows, more=more)
        return _("rows {rows} and {more} more", rows=rows, more=more)
    if plain:
        return ngettext("line {rows}", "lines {rows}", len(index), rows=rows)
    return ngettext("row {rows}", "rows {rows}", len(index), rows=rows)


def split_name(split: str) -> str:
    """A split ('train', 'dev', 'test') as a sentence names it, in the reader's language."""
    return _(SPLIT_NAMES[split])


def splits_text(splits: list[str]) -> str:
    """Two or more splits in a sentence: 'train, dev and test'."""
    return _("{names} and {last}", names=_(", ").join(split_name(s) for s in splits[:-1]), last=split_name(splits[-1]))


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
            check.errors.append(_("No {split} file was given. Upload a CSV for {split}.", split=split_name(split)))
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
            _(
                "The text column and the label column are both '{column}'. Pick two different columns.",
                column=text_column,
            )
        )
        return check

    raw_labels: dict[str, pd.Series] = {}
    texts: dict[str, pd.Series] = {}
    for split, df in check.tables.items():
        name = files[split].name
        missing = [c for c in (text_column, label_column) if c not in df.columns]
        if missing:
            check.errors.append(
                _(
                    "{file} has no column {missing}. Its columns are {columns}: pick the text and label columns.",
                    file=name,
                    missing=", ".join(repr(c) for c in missing),
                    columns=", ".join(repr(str(c)) for c in df.columns),
                )
            )
            continue
        text = df[text_column].astype(str)
        label = df[label_column].astype(str).str.strip()
        check.errors.extend(text_problems(name, text, text_column, settings))
        empty_label = label == ""
        if empty_label.any():
            check.errors.append(
                _(
                    "{file} {rows}, column '{column}': the label is missing. "
                    "Give every row a label or delete the row.",
                    file=name,
                    rows=rows_of(df.index[empty_label]),
                    column=label_column,
                )
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
                _(
                    "Column '{column}' holds numbers such as '{example}', not classes. "
                    "A classifier needs whole-number or named labels; is this a score column?",
                    column=label_column,
                    example=fractional.iloc[0],
                )
            )
            return check
        check.warnings.append(
            _("Labels written like '{example}' were read as whole numbers.", example=all_labels.iloc[0])
        )
        raw_labels = {k: v.str.replace(_DOT_ZEROS, "", regex=True) for k, v in raw_labels.items()}
        all_labels = pd.concat(raw_labels.values())
    integer = bool(all_labels.str.match(_INT_LABEL).all())
    values = sorted(raw_labels["train"].unique().tolist(), key=int if integer else str)
    if len(values) < 2:
        check.errors.append(
            _(
                "{file}: every row has the label '{label}'. A classifier needs at least 2 classes.",
                file=files["train"].name,
                label=values[0],
            )
        )
        return check
    for split in ("dev", "test"):
        if split not in raw_labels:
            continue
        unseen = ~raw_labels[split].isin(values)
        if unseen.any():
            labels = ", ".join(repr(v) for v in sorted(set(raw_labels[split][unseen]))[:MAX_LISTED])
            check.errors.append(
                _(
                    "{file} {rows}, column '{column}': label {labels} never appears in train, so the model cannot "
                    "learn it. Add examples of it to train or remove these rows.",
                    file=files[split].name,
                    rows=rows_of(raw_labels[split].index[unseen]),
                    column=label_column,
                    labels=labels,
                )
            )
    if integer and class_names is not None:
        too_big = [v for v in values if not 0 <= int(v) < len(class_names)]
        if too_big:
            check.errors.append(
                _(
                    "The class-name list has {count} names, but label {label} needs name number {needed}. "
                    "Line i of the list names label i, starting from 0.",
                    count=len(class_names),
                    label=too_big[0],
                    needed=int(too_big[0]) + 1,
                )
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
        return DatasetCheck(errors=[_("Give train, dev and test each a share between 1 and 99 percent.")])
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
            _(
                "{file}: class {classes} has fewer than 3 rows, so it cannot be in train, dev and test all three. "
                "Add rows of it, or remove them.",
                file=file.name,
                classes=", ".join(repr(c) for c in few[:MAX_LISTED]),
            )
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
        part = _("{file} ({split} part)", file=file.name, split=split_name(split))
        check.source[split] = {"file": part, "encoding": check.source["file"]["encoding"]}
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
                _(
                    "{file} was given for {split}, but its name says {other}: were the files put in the wrong boxes?",
                    file=file.name,
                    split=split_name(split),
                    other=split_name(says[0]),
                )
            )
    train_rows = len(check.splits["train"])
    for split in ("dev", "test"):
        rows = len(check.splits[split])
        if rows > train_rows:
            out.append(
                _(
                    "The {split} file {file} ({rows} rows) is larger than the train file {train_file} ({train_rows} "
                    "rows). Train is usually the largest: were the files put in the wrong boxes?",
                    split=split_name(split),
                    file=files[split].name,
                    rows=f"{rows:,}",
                    train_file=files["train"].name,
                    train_rows=f"{train_rows:,}",
                )
            )
    return out


def _warnings(
    check: DatasetCheck, files: dict[str, SplitFile], tokenizer, max_length: int, split_here: bool = False
) -> list[str]:
    """split_here: the three parts were cut from one file by check_one_file, so they are not the same file and
    cannot be in the wrong boxes (each part's name holds the file's, which may say 'train')."""
    out, repeated = [], set()
    for splits in [] if split_here else _same_files(files):
        out.append(
            _(
                "The same file ({file}) was given for {splits}. Each needs its own texts: train to learn from, dev to "
                "check the model while it learns, test to score it at the end; scores on texts the model learnt from "
                "look better than they are. Pick the right file for each.",
                file=files[splits[0]].name,
                splits=splits_text(splits),
            )
        )
        repeated |= set(splits) if "train" in splits else set()
    out += [] if split_here else _swapped(check, files)
    train_counts = check.label_counts["train"]
    biggest, smallest = max(train_counts, key=train_counts.get), min(train_counts, key=train_counts.get)
    if train_counts[smallest] * 10 <= train_counts[biggest]:
        out.append(
            _(
                "Heavy class imbalance in train: '{biggest}' has {most} rows, '{smallest}' has {fewest}. Accuracy can "
                "look good while rare classes are never predicted: compare macro-F1 too.",
                biggest=biggest,
                most=train_counts[biggest],
                smallest=smallest,
                fewest=train_counts[smallest],
            )
        )
    for split in ("dev", "test"):
        missing = [c for c, n in check.label_counts[split].items() if n == 0]
        if missing:
            names = ", ".join(f"'{c}'" for c in missing[:MAX_LISTED])
            if len(missing) > MAX_LISTED:
                names = _("{classes} and more", classes=names)
            out.append(
                ngettext(
                    "{file} has no rows of class {classes} (train has them): its scores say nothing about that "
                    "class, and its macro-F1 averages over the other classes. Move some rows of each class into it "
                    "if you can.",
                    "{file} has no rows of class {classes} (train has them): its scores say nothing about those "
                    "classes, and its macro-F1 averages over the other classes. Move some rows of each class into it "
                    "if you can.",
                    len(missing),
                    file=files[split].name,
                    classes=names,
                )
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
                _(
                    "{count} texts in {file} also appear in {train_file} ({rows}): scores on {split} will look better "
                    "than they are.",
                    count=int(shared.sum()),
                    file=files[split].name,
                    train_file=files["train"].name,
                    rows=rows_of(check.splits[split].index[shared]),
                    split=split_name(split),
                )
            )
    if tokenizer is not None:
        for split, df in check.splits.items():
            cut, looked = count_longer(tokenizer, df["text"], max_length)
            if cut:
                share, file = f"{cut / looked:.0%}", files[split].name
                if looked < len(df):
                    out.append(
                        _(
                            "About {share} of {file} texts ({cut} of {looked} looked at, spread over its {rows} rows) "
                            "are longer than {max_length} tokens; training will cut them at {max_length}.",
                            share=share,
                            file=file,
                            cut=cut,
                            looked=looked,
                            rows=f"{len(df):,}",
                            max_length=max_length,
                        )
                    )
                else:
                    out.append(
                        _(
                            "{share} of {file} texts ({cut} of {looked}) are longer than {max_length} tokens; "
                            "training will cut them at {max_length}.",
                            share=share,
                            file=file,
                            cut=cut,
                            looked=looked,
                            max_length=max_length,
                        )
                    )
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
