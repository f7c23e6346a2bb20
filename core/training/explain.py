"""Why a run gave its label: each word of a text (in Chinese, each character) with how much it moved the model's
probability of a class, by Integrated Gradients on the embedding layer (captum's LayerIntegratedGradients).

The path runs from a baseline, the same text with every word replaced by the padding token ([CLS] and [SEP] kept),
to the text itself; a word's score is its share of the probability gained on the way, summed over the embedding's
hidden dimension. The scores add up to p(text) - p(baseline) up to the convergence delta captum reports: where that
is large beside the change explained, the explanation is marked approximate. Full and LoRA runs are explained alike:
a LoRA run's model is loaded with its adapters merged in (predict.load_artifact)."""

from __future__ import annotations

import bisect
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core import words as wording
from core.i18n import _

if TYPE_CHECKING:  # the Predictor brings torch: imported where a text is explained, not where a page imports this
    from core.training.predict import Predictor

# Integration steps. The first try takes STEPS: a 64-token text with the bundled model takes 0.29 s on a 2-core CPU
# (bench/explain_bench.py, docs/using.md#why-this-label), and on a small BERT trained on the demo set 24 steps left
# the scores of 288 of the 316 test titles within a tenth of the change they explain (16 steps: 272, 32: 296). One
# that comes out approximate is tried again with twice the steps, up to MAX_STEPS, while the next try fits in BUDGET_S
# (it takes about twice the last one).
STEPS = 24
MAX_STEPS = 192
BUDGET_S = 1.0
STEP_TOKENS = 4096  # tokens through the model at once (steps x the text's tokens): a backward pass keeps activations
APPROXIMATE_SHARE = 0.1  # a delta above this share of the change explained marks the explanation approximate
SMALL_CHANGE = 0.01  # ... of at least one percentage point: a text that moves the probability less explains little

# Characters a BERT tokenizer reads one by one (tokenization_bert's _is_chinese_char), and the CJK and full-width
# punctuation: each is a word of its own. Any other run of characters between spaces is one word as typed.
_CJK = "\u3001-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef\U00020000-\U0002ebef\U0002f800-\U0002fa1f"
_WORD = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")


class CannotExplain(ValueError):
    """A text or class that cannot be explained, in plain words."""


@dataclass(frozen=True)
class Word:
    text: str
    start: int  # where it stands in the text (characters): the gaps between words are drawn as they were typed
    end: int
    score: float | None  # probability it added to the class (0.12: 12 points; negative: taken away); None: not read


@dataclass(frozen=True)
class Explanation:
    text: str
    label: str  # the predicted class
    probability: float  # of the predicted class
    target: str  # the class whose probability the words explain
    target_probability: float
    baseline_probability: float  # the target's, for the text with every word replaced by padding
    words: list[Word]
    delta: float  # the words' scores summed, minus (target_probability - baseline_probability)
    steps: int
    seconds: float

    @property
    def change(self) -> float:
        """The probability the words explain: what the text gives the class over the padding baseline."""
        return self.target_probability - self.baseline_probability

    @property
    def approximate(self) -> bool:
        return approximate(self.delta, self.change)

    @property
    def largest(self) -> float:
        """The largest score by size: the deepest shade."""
        return max((abs(w.score) for w in self.words if w.score is not None), default=0.0)

    def summary(self) -> str:
        """What the words add up to, in a sentence a teacher can read aloud; and whether it is approximate."""
        said = {
            "points": f"{abs(100 * self.change):.1f}",
            "target": self.target,
            "blank": wording.percent(self.baseline_probability),
            "typed": wording.percent(self.target_probability),
        }
        if self.change >= 0:
            out = _(
                "Together the words add {points} points to '{target}': {blank} with every word blanked out, {typed} "
                "with the text.",
                **said,
            )
        else:
            out = _(
                "Together the words take {points} points from '{target}': {blank} with every word blanked out, "
                "{typed} with the text.",
                **said,
            )
        if self.approximate:
            out += _(
                " Approximate: the words' scores add up to {total}, {off} points off ({steps} steps).",
                total=wording.points(self.change + self.delta),
                off=f"{abs(100 * self.delta):.1f}",
                steps=self.steps,
            )
        return out

    def to_json(self) -> dict:
        """What `python -m core explain --json` prints."""
        return {
            "label": self.label,
            "probability": self.probability,
            "target": self.target,
            "tokens": [{"text": w.text, "score": w.score} for w in self.words],
            "delta": self.delta,
            "seconds": self.seconds,
        }


def approximate(delta: float, change: float) -> bool:
    """True when the scores miss the change they explain by more than a tenth of it (of a point at least)."""
    return abs(delta) > APPROXIMATE_SHARE * max(abs(change), SMALL_CHANGE)


def words_of(text: str) -> list[tuple[int, int]]:
    """(start, end) of each word as typed: a CJK character alone, else a run of characters between spaces."""
    return [m.span() for m in _WORD.finditer(text)]


def merge(text: str, spans: list[tuple[int, int]], scores: list[float], read_until: int | None) -> list[Word]:
    """Token scores summed into the words they lie in. A token over several words (a SentencePiece token of two
    Chinese characters) shares its score among them evenly, so the words' scores add up to the tokens'.
    read_until: the character where truncation stopped reading (None: all was read); words from there get None."""
    units = words_of(text)
    starts = [s for s, _ in units]
    totals = [0.0] * len(units)
    for (start, end), score in zip(spans, scores, strict=True):
        covered, i = [], max(bisect.bisect_right(starts, start) - 1, 0)
        while i < len(units) and units[i][0] < max(end, start + 1):  # the words the token's characters lie in
            covered += [i] if units[i][1] > start else []
            i += 1
        if not covered:  # a token in a gap (a tokenizer's leading space): the next word, else the last
            covered = [min(bisect.bisect_left(starts, start), len(units) - 1)]
        for i in covered:
            totals[i] += score / len(covered)
    unread = read_until if read_until is not None else len(text) + 1
    return [Word(text[s:e], s, e, None if s >= unread else total) for (s, e), total in zip(units, totals, strict=True)]


def explain(
    predictor: Predictor, text: str, target: str | None = None, steps: int = STEPS, budget_s: float = BUDGET_S
) -> Explanation:
    """Each word's part in the run's probability of `target` (default: the predicted class) for this text. An
    approximate one is tried again with twice the steps while that fits in budget_s (0: one try, with `steps`)."""
    import torch
    from captum.attr import LayerIntegratedGradients

    from core.training import evaluate

    began = time.perf_counter()
    if not text.strip():
        raise CannotExplain(_("The text is empty: type a text to explain."))
    if target is not None and target not in predictor.classes:
        raise CannotExplain(
            _(
                "There is no class '{target}' in this run; its classes: {classes}.",
                target=target,
                classes=", ".join(predictor.classes),
            )
        )
    model, tokenizer = predictor.model, predictor.tokenizer
    device = next(model.parameters()).device
    encoded = tokenizer(
        text,
        truncation=True,
        max_length=predictor.max_length,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
        return_tensors="pt",
    )
    ids, mask = encoded["input_ids"].to(device), encoded["attention_mask"].to(device)
    special = encoded["special_tokens_mask"][0].bool().to(device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    baseline = torch.where(special, ids, torch.full_like(ids, pad))

    def probabilities(input_ids, attention_mask):
        with evaluate.autocast(device):  # as predict_proba computes them (bf16 where the CPU has it)
            return torch.softmax(model(input_ids=input_ids, attention_mask=attention_mask).logits.float(), dim=-1)

    with predictor.lock:  # the method hooks the embedding layer while it runs: no other text may pass through it
        with torch.inference_mode():
            probs = probabilities(torch.cat([ids, baseline]), torch.cat([mask, mask])).cpu()
        label = int(probs[0].argmax())
        index = label if target is None else predictor.classes.index(target)
        # Gradients are taken for the embeddings alone. Weights that ask for none make it much faster on a bf16 CPU:
        # 16 steps of a 64-token text with the bundled model took 0.2 s against 1.8 s.
        weights = [p for p in model.parameters() if p.requires_grad]
        method = LayerIntegratedGradients(probabilities, model.get_input_embeddings())
        try:
            for p in weights:
                p.requires_grad_(False)
            while True:
                tried = time.perf_counter()
                attributions, delta = method.attribute(
                    ids,
                    baselines=baseline,
                    target=index,
                    additional_forward_args=(mask,),
                    n_steps=steps,
                    internal_batch_size=max(1, min(steps, STEP_TOKENS // ids.shape[1])),  # the steps in batches
                    return_convergence_delta=True,
                )
                spent, took = time.perf_counter() - began, time.perf_counter() - tried
                change = float(probs[0, index] - probs[1, index])
                if not approximate(delta.item(), change) or 2 * steps > MAX_STEPS or spent + 2 * took > budget_s:
                    break
                steps *= 2
        finally:
            for p in weights:
                p.requires_grad_(True)
    scores = attributions.sum(dim=-1)[0].float().cpu().tolist()
    kept = [i for i, is_special in enumerate(special.tolist()) if not is_special]
    spans = [tuple(encoded["offset_mapping"][0][i].tolist()) for i in kept]
    truncated = predictor.reading(text)["tokens"] > len(kept)
    words = merge(text, spans, [scores[i] for i in kept], spans[-1][1] if truncated and spans else None)
    return Explanation(
        text=text,
        label=predictor.classes[label],
        probability=float(probs[0, label]),
        target=predictor.classes[index],
        target_probability=float(probs[0, index]),
        baseline_probability=float(probs[1, index]),
        words=words,
        delta=float(delta.item()),
        steps=steps,
        seconds=time.perf_counter() - began,
    )
