"""The verdict of a comparison: which method wins on this test set, by how much, and how sure we can be.

Pure numpy / scipy on test predictions, no database and no Streamlit. Two methods, A (full fine-tuning) and B
(LoRA), each trained with the same S seeds and scored on the same n test texts. The difference is B minus A, in
points (accuracy 0.874 -> 87.4). Its 95 % interval comes from a bootstrap that resamples the test texts (paired:
a resampled text counts for both methods) and, for S > 1, the seeds too, so that it covers seed-to-seed variation.
For one pair, McNemar's exact test on the texts one method got right and the other wrong is given beside it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest, norm

from core.i18n import N_, _
from core.training.evaluate import macro_f1_of_counts

RESAMPLES = 10_000
CONFIDENCE = 0.95
# An interval that contains 0 but reaches further than this on either side says too little to call the methods
# equal: the test set is then "too small to tell differences under" its half-width. LoRA and full fine-tuning
# usually differ by 0.5 to 2 points (the seed article: 0.45; the demo set: about 2).
RESOLUTION_POINTS = 2.0
# Before any run, the share of test texts on which two methods disagree (one right, the other wrong) is not known;
# on the demo set it was 7 % (22 and 23 of 316 texts, 3 epochs, seeds 42 and 43); one in ten, a little more, keeps
# the noise floor the Train and Data pages show on the careful side.
TYPICAL_DISAGREEMENT = 0.1
OUTCOMES = ("lora_better", "full_better", "no_difference", "too_few")
METRICS = {"accuracy": N_("test accuracy"), "f1_macro": N_("macro-F1")}
SIDES = {"full fine-tuning": N_("full fine-tuning")}  # a side's name as data -> its words; LoRA stays LoRA
_RUN_SIDE = re.compile(r"run #(\d+)")  # comparisons.side_names of two runs of one method


def name_text(name: str) -> str:
    """A side's name (Verdict.names, which `compare --json` prints as it is) in the reader's language."""
    if name in SIDES:
        return _(SIDES[name])
    run = _RUN_SIDE.fullmatch(name)
    return _("run #{run}", run=run[1]) if run else name


def percent_text(points: float) -> str:
    """A score in points as the dashboard writes a share: '87.4 %' ('87.4%' in Chinese)."""
    return _("{number} %", number=f"{points:.1f}")


def noise_floor(test_size: int, disagreement: float = TYPICAL_DISAGREEMENT) -> float:
    """Points of accuracy under which a difference between two methods cannot be told from chance on this many test
    texts: the half-width of the 95 % interval of a paired difference when the methods disagree on a share
    `disagreement` of the texts (1.96 * sqrt(disagreement / n), in points)."""
    if test_size <= 0:
        return math.inf
    return 100 * norm.ppf(0.5 + CONFIDENCE / 2) * math.sqrt(disagreement / test_size)


def texts_needed(points: float = RESOLUTION_POINTS, disagreement: float = TYPICAL_DISAGREEMENT) -> int:
    """Test texts needed for the noise floor to come down to `points`."""
    return math.ceil(disagreement * (100 * norm.ppf(0.5 + CONFIDENCE / 2) / points) ** 2)


def mcnemar(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> tuple[float, int, int]:
    """McNemar's exact test: (two-sided p, texts only B got right, texts only A got right). Under 'no difference'
    each text that one method got right and the other wrong is equally likely to favour either method."""
    right_a, right_b = pred_a == y_true, pred_b == y_true
    only_b, only_a = int(np.sum(right_b & ~right_a)), int(np.sum(right_a & ~right_b))
    if only_a + only_b == 0:
        return 1.0, 0, 0
    return float(binomtest(only_b, only_a + only_b, 0.5).pvalue), only_b, only_a


@dataclass
class MetricVerdict:
    metric: str  # "accuracy" or "f1_macro"
    outcome: str  # one of OUTCOMES
    difference: float  # B minus A, points, mean over the seeds
    low: float  # 95 % interval, points
    high: float
    a: list[float]  # each seed's score of A and of B, points
    b: list[float]

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    @property
    def per_seed(self) -> list[float]:
        return [b - a for a, b in zip(self.a, self.b)]


@dataclass
class Verdict:
    accuracy: MetricVerdict
    f1_macro: MetricVerdict
    seeds: int
    test_size: int
    mcnemar_p: float | None = None  # one pair only
    only_b: int | None = None  # texts B got right and A wrong (one pair)
    only_a: int | None = None
    names: tuple[str, str] = ("full fine-tuning", "LoRA")

    @property
    def outcome(self) -> str:
        return self.accuracy.outcome

    def leader(self, metric: str = "accuracy") -> str | None:
        """The method with the higher mean score, else None (level to the 0.1 point shown)."""
        m: MetricVerdict = getattr(self, metric)
        if self.winner(metric):
            return self.winner(metric)
        if abs(m.difference) < 0.05:
            return None
        return self.names[1] if m.difference > 0 else self.names[0]

    def winner(self, metric: str = "accuracy") -> str | None:
        """The method the interval shows to be better, else None."""
        outcome = getattr(self, metric).outcome
        return {"lora_better": self.names[1], "full_better": self.names[0]}.get(outcome)

    def scores(self, metric: str = "accuracy") -> str:
        """Both scores side by side, A first: 'full fine-tuning 45.8 %, LoRA 40.3 %' (means over the seeds)."""
        m: MetricVerdict = getattr(self, metric)
        (a, b), mean = self.names, lambda xs: sum(xs) / len(xs)
        return _(
            "{a} {a_score}, {b} {b_score}",
            a=name_text(a),
            a_score=percent_text(mean(m.a)),
            b=name_text(b),
            b_score=percent_text(mean(m.b)),
        )

    def seeds_agree(self, metric: str = "accuracy") -> str:
        """How the seeds went, in words: 'full fine-tuning was better on both seeds'; '' for one seed."""
        m: MetricVerdict = getattr(self, metric)
        seeds = len(m.per_seed)
        if seeds < 2:
            return ""
        a, b = self.names
        wins = {b: sum(d > 1e-9 for d in m.per_seed), a: sum(d < -1e-9 for d in m.per_seed)}
        level = seeds - wins[a] - wins[b]
        first = self.leader(metric) or max(wins, key=wins.get)
        other = b if first == a else a
        named = {"first": name_text(first), "other": name_text(other)}
        if level == seeds:
            return _("level on both seeds") if seeds == 2 else _("level on all {seeds} seeds", seeds=seeds)
        if wins[first] == seeds:
            if seeds == 2:
                return _("{first} was better on both seeds", **named)
            return _("{first} was better on all {seeds} seeds", seeds=seeds, **named)
        counts = {"wins": wins[first], "seeds": seeds, "other_wins": wins[other], "level": level, **named}
        if wins[other] and level:
            return _(
                "{first} was better on {wins} of {seeds} seeds, {other} on {other_wins}, level on {level}", **counts
            )
        if wins[other]:
            return _("{first} was better on {wins} of {seeds} seeds, {other} on {other_wins}", **counts)
        if level:
            return _("{first} was better on {wins} of {seeds} seeds, level on {level}", **counts)
        return _("{first} was better on {wins} of {seeds} seeds", **counts)

    def difference(self, metric: str = "accuracy") -> str:
        """The difference in the leader's favour, with its 95 % interval, in points."""
        m: MetricVerdict = getattr(self, metric)
        leader = self.leader(metric)
        if leader is None:
            return _(
                "The two are level; the 95 % interval runs from {b} {behind} points behind to {ahead} ahead.",
                b=name_text(self.names[1]),
                behind=f"{-m.low:.1f}",
                ahead=f"{m.high:.1f}",
            )
        low, high = (m.low, m.high) if leader == self.names[1] else (-m.high, -m.low)
        said = {"leader": name_text(leader), "by": f"{abs(m.difference):.1f}", "high": f"{high:.1f}"}
        if self.winner(metric):
            return _cap(
                _(
                    "{leader} is better by {by} points (95 % interval {low} to {high} points).",
                    low=f"{low:.1f}",
                    **said,
                )
            )
        if low <= -0.05:
            return _cap(
                _(
                    "{leader} is ahead by {by} points, but the 95 % interval runs from {behind} points behind to "
                    "{high} points ahead.",
                    behind=f"{-low:.1f}",
                    **said,
                )
            )
        return _cap(
            _("{leader} is ahead by {by} points, but the 95 % interval runs from 0 to {high} points ahead.", **said)
        )

    def how_sure(self, metric: str = "accuracy") -> str:
        """One line on how sure the verdict is."""
        m: MetricVerdict = getattr(self, metric)
        winner = self.winner(metric)
        if winner and self.seeds > 1:
            return _(
                "Sure enough to call: the whole interval is on {winner}'s side of 0, so on other test texts and seeds "
                "it would very likely win again.",
                winner=name_text(winner),
            )
        if winner:
            return _(
                "Sure enough to call: the whole interval is on {winner}'s side of 0, so on other test texts it would "
                "very likely win again.",
                winner=name_text(winner),
            )
        if m.outcome == "no_difference":
            return _(
                "No winner: the interval holds 0 and is no wider than ±{points} points, so any difference is small.",
                points=f"{RESOLUTION_POINTS:g}",
            )
        return _(
            "Not sure: the interval holds 0 and is ±{points} points wide; {texts} test texts are too few to tell the "
            "methods apart. More test texts would narrow it.",
            points=f"{m.half_width:.1f}",
            texts=f"{self.test_size:,}",
        )

    def lines(self) -> list[str]:
        """The verdict read aloud, as the Compare page, the command line and the model card say it: both
        accuracies and how the seeds went, the difference in the winner's favour, how sure; then macro-F1."""
        agree = self.seeds_agree()
        first = (
            _("Test accuracy: {scores}; {seeds}.", scores=self.scores(), seeds=agree)
            if agree
            else _("Test accuracy: {scores}.", scores=self.scores())
        )
        scores, said = self.scores("f1_macro"), self.difference("f1_macro")
        if self.f1_macro.outcome == "no_difference":  # the difference said without its full stop, then why
            f1 = _("Macro-F1: {scores}. {difference}: any difference is small.", scores=scores, difference=said[:-1])
        elif self.f1_macro.outcome == "too_few":
            f1 = _(
                "Macro-F1: {scores}. {difference}: too few test texts to tell.", scores=scores, difference=said[:-1]
            )
        else:
            f1 = _("Macro-F1: {scores}. {difference}", scores=scores, difference=said)
        return [first, self.difference(), self.how_sure(), f1]

    def sentence(self) -> str:
        """The accuracy verdict in one paragraph (the first three of `lines`)."""
        accuracy, difference, sure = self.lines()[:3]
        return _("{accuracy} {difference} {sure}", accuracy=accuracy, difference=difference, sure=sure)


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def outcome_of(low: float, high: float) -> str:
    """The interval, in points, decides: above 0, B is better; below 0, A is; around 0, either the interval is
    narrow enough to say there is no difference, or the test set is too small to say anything."""
    if low > 0:
        return "lora_better"
    if high < 0:
        return "full_better"
    return "no_difference" if (high - low) / 2 <= RESOLUTION_POINTS else "too_few"


class _Scorer:
    """Accuracy and macro-F1 of every (seed, method) for weights over the distinct kinds of test text.

    A kind is one (true label, every prediction) tuple; texts of one kind are interchangeable, so a bootstrap
    resample is a multinomial draw of counts per kind: the same resamples as drawing texts, in O(kinds)."""

    def __init__(self, y_true: np.ndarray, preds: np.ndarray, n_classes: int):
        # preds: (M, n) predictions of M (seed, method) runs on the same n texts
        rows = np.concatenate([y_true[None, :], preds]).T
        kinds, self.counts = np.unique(rows, axis=0, return_counts=True)
        true, pred = kinds[:, :1], kinds[:, 1:]  # (T, 1), (T, M)
        classes = np.arange(n_classes)
        self.right = (pred == true).astype(float)  # (T, M)
        is_pred = pred[:, :, None] == classes  # (T, M, K)
        is_true = (true == classes)[:, None, :]  # (T, 1, K)
        self.tp = (is_pred & is_true).reshape(len(kinds), -1).astype(float)
        self.fp = (is_pred & ~is_true).reshape(len(kinds), -1).astype(float)
        self.fn = (~is_pred & is_true).reshape(len(kinds), -1).astype(float)
        self.shape = (preds.shape[0], n_classes)

    def scores(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        """weights: (R, T) counts per kind -> {metric: (R, M) scores in points}."""
        total = weights.sum(axis=1, keepdims=True)
        per_class = [(weights @ x).reshape(len(weights), *self.shape) for x in (self.tp, self.fp, self.fn)]
        return {"accuracy": 100 * (weights @ self.right) / total, "f1_macro": 100 * macro_f1_of_counts(*per_class)}


def compare_predictions(
    y_true,
    preds_a,
    preds_b,
    n_classes: int,
    resamples: int = RESAMPLES,
    seed: int = 0,
    names: tuple[str, str] = ("full fine-tuning", "LoRA"),
) -> Verdict:
    """The verdict for methods A and B, each run with the same S seeds on the same test texts.

    y_true: (n,) class ids; preds_a, preds_b: (S, n) or (n,) predicted class ids, seed k of A paired with seed k of
    B. The bootstrap is seeded, so the same predictions always give the same interval."""
    y_true = np.asarray(y_true)
    preds_a, preds_b = np.atleast_2d(preds_a), np.atleast_2d(preds_b)
    seeds, n = preds_a.shape
    if preds_b.shape != preds_a.shape or y_true.shape != (n,):
        raise ValueError("Both methods need predictions for every test text and the same number of seeds.")
    scorer = _Scorer(y_true, np.concatenate([preds_a, preds_b]), n_classes)
    point = scorer.scores(scorer.counts[None, :].astype(float))

    rng = np.random.default_rng(seed)
    diffs = {m: np.empty(resamples) for m in METRICS}
    chunk = max(1, min(resamples, 2_000_000 // max(1, len(scorer.counts) * seeds * n_classes)))
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        weights = rng.multinomial(n, scorer.counts / n, size=size).astype(float)  # texts, with replacement
        seed_weights = rng.multinomial(seeds, np.full(seeds, 1 / seeds), size=size)  # seeds, with replacement
        for metric, values in scorer.scores(weights).items():
            per_seed = values[:, seeds:] - values[:, :seeds]
            diffs[metric][start : start + size] = (per_seed * seed_weights).sum(axis=1) / seeds

    tail = 100 * (1 - CONFIDENCE) / 2
    verdicts = {}
    for metric in METRICS:
        low, high = np.percentile(diffs[metric], [tail, 100 - tail])
        a, b = point[metric][0, :seeds], point[metric][0, seeds:]
        verdicts[metric] = MetricVerdict(
            metric=metric,
            outcome=outcome_of(low, high),
            difference=float(np.mean(b - a)),
            low=float(low),
            high=float(high),
            a=a.tolist(),
            b=b.tolist(),
        )
    verdict = Verdict(**verdicts, seeds=seeds, test_size=n, names=names)
    if seeds == 1:
        verdict.mcnemar_p, verdict.only_b, verdict.only_a = mcnemar(y_true, preds_a[0], preds_b[0])
    return verdict


@dataclass
class CostRatio:
    """B's cost as a multiple of A's: the mean over the pairs, and the smallest and largest."""

    name: str
    mean: float
    low: float
    high: float

    def text(self) -> str:
        if self.low == self.high:
            return ratio_text(self.mean)
        return _(
            "{mean} ({low} to {high})",
            mean=ratio_text(self.mean),
            low=ratio_text(self.low),
            high=ratio_text(self.high),
        )


COSTS = {  # key -> (what it measures, how a sentence says B's cost against A's, {r}: the ratio)
    "time": (N_("training time"), N_("took {r} the training time")),
    "samples_per_second": (N_("texts per second"), N_("trained {r} as many texts per second")),
    "peak_memory": (N_("peak memory"), N_("used {r} the memory")),
    "trainable_weights": (N_("trainable weights"), N_("trained {r} of the weights")),
    "disk": (N_("size on disk"), N_("saved {r} the disk space")),
}


def ratio_text(ratio: float) -> str:
    """A ratio in the one form every cost takes, read aloud as it is written: '0.79x' ('0.79 times'), and for a
    ratio under a tenth, where decimals get unreadable, its fraction: '1/196' ('one 196th')."""
    if 0 < ratio < 0.1:
        return f"1/{1 / ratio:,.0f}"
    return _("{ratio}x", ratio=f"{ratio:.2f}")


def cost_sentence(ratios: dict[str, CostRatio | None], names: tuple[str, str] = ("full fine-tuning", "LoRA")) -> str:
    """The known costs in one sentence a class reads: 'Against full fine-tuning, LoRA took 0.50x the training time,
    ..., and saved 1/40 the disk space.' (means over the seeds); '' when none is known."""
    said = [_(COSTS[k][1], r=ratio_text(r.mean)) for k, r in ratios.items() if r is not None]
    if not said:
        return ""
    listed = said[0] if len(said) == 1 else _("{items} and {last}", items=_(", ").join(said[:-1]), last=said[-1])
    return _("Against {a}, {b} {listed}.", a=name_text(names[0]), b=name_text(names[1]), listed=listed)


def cost_ratios(pairs: list[tuple[dict, dict]]) -> dict[str, CostRatio | None]:
    """Each cost of B over A for every pair (dicts with keys of COSTS), as mean and range; None where unknown."""
    out = {}
    for key in COSTS:
        ratios = [b[key] / a[key] for a, b in pairs if a.get(key) and b.get(key) is not None]
        out[key] = CostRatio(key, float(np.mean(ratios)), min(ratios), max(ratios)) if ratios else None
    return out
