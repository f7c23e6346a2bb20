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


def nested_rows(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Row indices of a stratified subset of n rows, nested: the subset of n rows holds every smaller one (for the same
    labels and seed). Each class's rows are shuffled (seeded); the rows are then ordered by their place in their
    class's order as a share of the class (the first row of every class first, so any n of at least the number of
    classes has every class), and the first n taken: each class's share of any prefix is its share of the whole, to
    within a row."""
    rng = np.random.default_rng(seed)
    keys = np.empty(len(labels))
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        keys[rows] = np.arange(len(rows)) / len(rows)
    order = np.lexsort((labels, keys))  # by share, then by class, so the order is the same on every machine
    return np.sort(order[: max(0, n)])
