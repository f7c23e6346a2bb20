"""The verdict's statistics against known answers and in simulation: McNemar's exact test, the paired bootstrap,
the group bootstrap, and the four outcomes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom
from sklearn.metrics import f1_score

from core.results import verdict


def constructed(n: int, right_a: int, only_b: int, only_a: int = 0, classes: int = 3):
    """Predictions on n texts: A and B both right on right_a - only_a texts, only B right on only_b, only A right on
    only_a, both wrong on the rest."""
    y = np.arange(n) % classes
    both = right_a - only_a
    a, b = (y + 1) % classes, (y + 1) % classes
    a[:both] = b[:both] = y[:both]
    b[both : both + only_b] = y[both : both + only_b]
    a[both + only_b : both + only_b + only_a] = y[both + only_b : both + only_b + only_a]
    return y, a, b


def test_mcnemar_exact_matches_the_textbook_binomial_answers():
    # 10 texts that only one method got right, 2 of them B's: p = 2 * P(X <= 2 | 10, 1/2) = 2 * 56 / 1024
    y, a, b = constructed(40, right_a=30, only_b=2, only_a=8)
    p, only_b, only_a = verdict.mcnemar(y, a, b)
    assert (only_b, only_a) == (2, 8)
    assert p == pytest.approx(112 / 1024)
    # all 10 one way: p = 2 / 2**10
    y, a, b = constructed(100, right_a=80, only_b=10)
    assert verdict.mcnemar(y, a, b) == (pytest.approx(2 / 1024), 10, 0)
    assert verdict.mcnemar(y, a, a)[0] == 1.0, "no text told them apart: nothing to test"


def test_paired_bootstrap_interval_on_a_known_difference():
    # B is right wherever A is, and on 10 more of 100 texts: +10 points. Resampling the texts, the count of those 10
    # is Binomial(100, 0.1), so the 95 % interval is its 2.5 % and 97.5 % quantiles.
    y, a, b = constructed(100, right_a=80, only_b=10)
    v = verdict.compare_predictions(y, a, b, 3)
    assert v.accuracy.difference == pytest.approx(10.0)
    assert (v.accuracy.a, v.accuracy.b) == ([pytest.approx(80.0)], [pytest.approx(90.0)])
    assert v.accuracy.low == pytest.approx(binom.ppf(0.025, 100, 0.1), abs=1.0)
    assert v.accuracy.high == pytest.approx(binom.ppf(0.975, 100, 0.1), abs=1.0)
    assert v.outcome == "lora_better" and v.mcnemar_p == pytest.approx(2 / 1024) and v.seeds == 1
    assert "LoRA is better by 10.0 points (95 % interval" in v.sentence()
    f1 = [100 * f1_score(y, p, labels=[0, 1, 2], average="macro", zero_division=0) for p in (a, b)]
    assert v.f1_macro.difference == pytest.approx(f1[1] - f1[0]), "macro-F1 as scikit-learn computes it"

    swapped = verdict.compare_predictions(y, b, a, 3)
    assert swapped.outcome == "full_better" and swapped.accuracy.difference == pytest.approx(-10.0)
    assert "Full fine-tuning is better by 10.0 points" in swapped.sentence()
    again = verdict.compare_predictions(y, b, a, 3)
    assert (again.accuracy.low, again.accuracy.high) == (swapped.accuracy.low, swapped.accuracy.high), "seeded"


def test_the_four_outcomes_and_their_sentences():
    assert verdict.outcome_of(0.5, 3.0) == "lora_better"
    assert verdict.outcome_of(-3.0, -0.5) == "full_better"
    assert verdict.outcome_of(-1.5, 1.9) == "no_difference"
    assert verdict.outcome_of(-5.0, 1.2) == "too_few"
    y, a, b = constructed(30, right_a=24, only_b=1)  # one text tells them apart, out of 30
    v = verdict.compare_predictions(y, a, b, 3)
    assert v.outcome == "too_few" and "Not sure: the interval holds 0" in v.sentence()
    assert "30 test texts are too few to tell the methods apart" in v.sentence()
    y, a, b = constructed(2000, right_a=1800, only_b=10, only_a=10)  # 20 of 2000 differ, 10 each way
    v = verdict.compare_predictions(y, a, b, 3)
    assert v.outcome == "no_difference" and v.accuracy.low < 0 < v.accuracy.high
    assert "No winner: the interval holds 0 and is no wider than ±2 points" in v.sentence()


def test_the_verdict_reads_both_scores_first_then_the_difference_in_the_winners_favour():
    # Two seeds on 200 texts: full fine-tuning right on 160 with both, LoRA on 140 and 145.
    y = np.arange(200) % 4
    right = np.zeros((2, 2, 200), dtype=bool)
    right[0, :, :160] = True
    right[1, 0, :140], right[1, 1, :145] = True, True
    a, b = (np.where(r, y, (y + 1) % 4) for r in right)
    v = verdict.compare_predictions(y, a, b, 4)
    scores, difference, sure, f1 = v.lines()
    assert scores == "Test accuracy: full fine-tuning 80.0 %, LoRA 71.2 %; full fine-tuning was better on both seeds."
    low, high = -v.accuracy.high, -v.accuracy.low  # in full fine-tuning's favour
    assert difference == f"Full fine-tuning is better by 8.8 points (95 % interval {low:.1f} to {high:.1f} points)."
    assert 0 < low < high and "minus" not in difference, "the winner's gain, not LoRA minus full read backwards"
    assert sure.startswith("Sure enough to call: the whole interval is on full fine-tuning's side of 0")
    assert f1.startswith("Macro-F1: full fine-tuning ") and "Full fine-tuning is better by" in f1
    assert v.sentence() == " ".join([scores, difference, sure]), "one home for the words of the page and the CLI"

    right[1, 0, :170] = True  # seed 42: LoRA now right on 170, better than full fine-tuning's 160
    a, b = (np.where(r, y, (y + 1) % 4) for r in right)
    mixed = verdict.compare_predictions(y, a, b, 4)
    assert mixed.winner() is None and mixed.leader() == "full fine-tuning"
    assert mixed.lines()[0].endswith("; full fine-tuning was better on 1 of 2 seeds, LoRA on 1.")
    assert mixed.lines()[1].startswith("Full fine-tuning is ahead by 1.2 points, but the 95 % interval runs from ")
    assert " points behind to " in mixed.lines()[1]


def test_a_group_interval_covers_the_seeds_spread():
    # Three seeds on one test set: LoRA +5, 0 and -5 points. Texts alone would give a narrow interval around 0;
    # resampling the seeds too must reach out towards the seeds' own results.
    y = np.arange(200) % 4
    right = np.zeros((2, 3, 200), dtype=bool)
    right[0, :, :160] = True  # full: 80 % with every seed, on the same texts
    for seed, extra in enumerate((10, 0, -10)):
        right[1, seed, : 160 + extra] = True
    a, b = (np.where(r, y, (y + 1) % 4) for r in right)
    v = verdict.compare_predictions(y, a, b, 4)
    assert v.seeds == 3 and v.mcnemar_p is None
    assert v.accuracy.per_seed == pytest.approx([5.0, 0.0, -5.0])
    assert v.accuracy.difference == pytest.approx(0.0)
    assert v.accuracy.low < -2.5 and v.accuracy.high > 2.5
    texts_only = [verdict.compare_predictions(y, a[k], b[k], 4).accuracy for k in range(3)]
    assert texts_only[1].high - texts_only[1].low < v.accuracy.high - v.accuracy.low


def simulate_pair(rng, n: int, p_a: float, p_b: float, agree: float, classes: int = 4):
    """Two classifiers with true accuracies p_a and p_b whose errors fall on the same texts with probability agree."""
    y = rng.integers(0, classes, n)
    u = rng.random(n)
    v = np.where(rng.random(n) < agree, u, rng.random(n))
    wrong = (y + rng.integers(1, classes, n)) % classes
    return y, np.where(u < p_a, y, wrong), np.where(v < p_b, y, wrong)


def test_simulation_the_interval_covers_the_true_difference_about_95_percent_of_the_time():
    rng = np.random.default_rng(2026)
    sims, covered = 400, 0
    for _ in range(sims):
        y, a, b = simulate_pair(rng, n=200, p_a=0.80, p_b=0.85, agree=0.6)
        v = verdict.compare_predictions(y, a, b, 4, resamples=1000, seed=int(rng.integers(1 << 30)))
        covered += v.accuracy.low <= 5.0 <= v.accuracy.high
    assert 0.93 <= covered / sims <= 0.97, covered / sims


def test_simulation_equal_classifiers_get_no_difference_at_least_90_percent_of_the_time():
    rng = np.random.default_rng(7)
    sims = 200
    outcomes = [
        verdict.compare_predictions(
            *simulate_pair(rng, n=1000, p_a=0.9, p_b=0.9, agree=0.8), 4, resamples=1000, seed=i
        ).outcome
        for i in range(sims)
    ]
    assert outcomes.count("no_difference") / sims >= 0.90, {o: outcomes.count(o) for o in verdict.OUTCOMES}


def test_noise_floor_from_the_test_size():
    assert verdict.noise_floor(316) == pytest.approx(3.49, abs=0.01)  # the demo set's test split
    assert verdict.noise_floor(4 * 316) == pytest.approx(verdict.noise_floor(316) / 2)
    assert verdict.noise_floor(verdict.texts_needed(2.0)) <= 2.0 < verdict.noise_floor(verdict.texts_needed(2.0) - 1)


def test_cost_ratios_mean_and_range_over_the_pairs():
    pairs = [
        (
            {"time": 50.0, "trainable_weights": 22_000_000, "disk": 90e6},
            {"time": 25.0, "trainable_weights": 110_000, "disk": 2.25e6},
        ),
        (
            {"time": 40.0, "trainable_weights": 22_000_000, "disk": 90e6},
            {"time": 24.0, "trainable_weights": 110_000, "disk": 2.25e6},
        ),
    ]
    costs = verdict.cost_ratios(pairs)
    assert costs["time"].mean == pytest.approx(0.55) and (costs["time"].low, costs["time"].high) == (0.5, 0.6)
    assert costs["time"].text() == "0.55x (0.50x to 0.60x)"
    assert costs["trainable_weights"].text() == "1/200", "one form for every ratio: no percent among the x"
    assert costs["disk"].text() == "1/40"
    assert costs["peak_memory"] is None, "unknown costs are left out, not made up"
    assert verdict.cost_sentence(costs) == (
        "Against full fine-tuning, LoRA took 0.55x the training time, trained 1/200 of the weights and saved 1/40 the "
        "disk space."
    )
    assert "samples" not in " ".join(name for name, _ in verdict.COSTS.values()), "plain words: texts, not samples"


def test_the_verdicts_macro_f1_is_each_runs_recorded_macro_f1_when_the_test_set_lacks_a_class():
    # Five classes; the test set has no "tech" (4). Full fine-tuning predicts it twice (a class a run scores, though
    # absent from the test set), LoRA never does: the verdict must score each run as its test results recorded it.
    from core.training import evaluate

    classes = ["business", "entertainment", "politics", "sport", "tech"]
    y = np.arange(40) % 4
    full = y.copy()
    full[[0, 5]] = 4
    full[[1, 2, 3]] = 0
    lora = y.copy()
    lora[[6, 7]] = 3
    lora_seed2 = y.copy()
    recorded = [
        100 * evaluate.test_metrics(y, np.eye(5)[p], classes)["f1_macro"] for p in (full, lora, full, lora_seed2)
    ]
    assert recorded[1] > 90 and recorded[3] == 100, "a perfect LoRA scores 100, not 80 (4 of 5 classes)"
    one = verdict.compare_predictions(y, full, lora, 5, resamples=500)
    assert (one.f1_macro.a, one.f1_macro.b) == ([pytest.approx(recorded[0])], [pytest.approx(recorded[1])])
    assert one.f1_macro.difference == pytest.approx(recorded[1] - recorded[0])
    two = verdict.compare_predictions(y, [full, full], [lora, lora_seed2], 5, resamples=500)
    assert two.f1_macro.b == [pytest.approx(recorded[1]), pytest.approx(recorded[3])]
    assert two.f1_macro.low <= two.f1_macro.difference <= two.f1_macro.high
