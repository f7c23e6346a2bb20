"""Splitting one labelled file into train, dev and test sets, stratified by class."""

from __future__ import annotations

import numpy as np

from core.data.reading import SPLITS

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
