"""How much of a dataset a model can read, and which script and language a text is written in.

A BERT-style tokenizer turns a word it cannot spell from its vocabulary into one unknown token ([UNK]); in Chinese
each character is a word of its own. The share of unknown tokens among a text's tokens (the [CLS] and [SEP] the
model adds left out) is how much of the text the model does not know: what it cannot read, it cannot learn from.
Measured on a spread sample of each split (as the long-text warning is), before anything is trained.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.data import checking, datasets, reading
from core.i18n import N_, _
from core.store.db import Dataset, Prediction
from core.store.settings import Settings
from core.training import models
from core.words import percent

POOR_SHARE = 0.2  # unknown tokens from this share on: the model reads too little of the text to learn it well
OTHER_SCRIPT = 0.1  # a typed text's script that makes up less than this share of the training letters is foreign
MAX_CANDIDATES = 8  # models on this machine measured as alternatives (each one's tokenizer is loaded)
SCRIPT_SAMPLE = 500  # a run's texts read to know its script and language
OTHER_LANGUAGE = 0.1  # languages of at least this share of a run's texts are the run's languages
NOT_THE_RUNS = 0.001  # a typed text whose probability of being in the run's languages is at most this is foreign
MIN_WORDS, MIN_LETTERS = 4, 20  # a shorter text is too short to tell its language (a name, a headline's start)
READS_CHINESE = ("bert-base-chinese", "hfl/chinese-roberta-wwm-ext", "bert-base-multilingual-cased")
READS_MANY = ("bert-base-multilingual-cased", "xlm-roberta-base")  # about 100 languages each
SCRIPT_NAMES = {  # the first word of a letter's Unicode name -> its script in words (the key of `scripts`' counts)
    "CJK": N_("Chinese characters"),
    "LATIN": N_("Latin letters"),
    "HIRAGANA": N_("Japanese kana"),
    "KATAKANA": N_("Japanese kana"),
    "HANGUL": N_("Korean letters"),
    "CYRILLIC": N_("Cyrillic letters"),
    "GREEK": N_("Greek letters"),
    "ARABIC": N_("Arabic letters"),
    "HEBREW": N_("Hebrew letters"),
    "DEVANAGARI": N_("Devanagari letters"),
    "THAI": N_("Thai letters"),
}  # any other script is "<Word> letters", shown as it is
LANGUAGE_NAMES = {  # ISO 639-1 codes of py3langid's most common languages; any other is shown as its code
    "ar": N_("Arabic"), "ca": N_("Catalan"), "cs": N_("Czech"), "da": N_("Danish"), "de": N_("German"),
    "el": N_("Greek"), "en": N_("English"), "es": N_("Spanish"), "fi": N_("Finnish"), "fr": N_("French"),
    "he": N_("Hebrew"), "hi": N_("Hindi"), "hu": N_("Hungarian"), "id": N_("Indonesian"), "it": N_("Italian"),
    "ja": N_("Japanese"), "ko": N_("Korean"), "la": N_("Latin"), "nl": N_("Dutch"), "no": N_("Norwegian"),
    "pl": N_("Polish"), "pt": N_("Portuguese"), "ro": N_("Romanian"), "ru": N_("Russian"), "sv": N_("Swedish"),
    "tr": N_("Turkish"), "uk": N_("Ukrainian"), "vi": N_("Vietnamese"), "zh": N_("Chinese"),
}  # fmt: skip


def unknown_in(tokenizer, rows: list[list[int]]) -> tuple[int, int]:
    """(unknown tokens, tokens) in these token ids, tokenized without the model's special tokens."""
    unk = tokenizer.unk_token_id
    total = sum(map(len, rows))
    return (0 if unk is None else sum(row.count(unk) for row in rows)), total  # byte-level models know every text


def unknown_share(tokenizer, texts: list[str]) -> float | None:
    """The share of the texts' tokens that the model does not know (0 to 1); None when there is no token."""
    quiet = {"return_attention_mask": False, "return_token_type_ids": False}
    rows = tokenizer(list(texts), add_special_tokens=False, **quiet)["input_ids"]
    unknown, total = unknown_in(tokenizer, rows)
    return unknown / total if total else None


@lru_cache(maxsize=4096)
def _script(ch: str) -> str | None:
    if not ch.isalpha():
        return None  # digits, punctuation and spaces belong to no language
    word = unicodedata.name(ch, "?").split(" ", 1)[0]
    return SCRIPT_NAMES.get(word, f"{word.capitalize()} letters")


def scripts(texts) -> Counter:
    """Letters per script in these texts, e.g. {'Chinese characters': 812, 'Latin letters': 40}. Full-width letters
    count as the letters they stand for."""
    counts = Counter()
    for text in texts:
        counts.update(filter(None, map(_script, unicodedata.normalize("NFKC", text))))
    return counts


def main_script(counts: Counter) -> str | None:
    return counts.most_common(1)[0][0] if counts else None


def script_words(script: str) -> str:
    """A script of `scripts`' counts in the reader's words: a named one translated, any other ("Runic letters") as
    '<its Unicode name> letters'."""
    if script in SCRIPT_NAMES.values():
        return _(script)
    return _("{script} letters", script=script.removesuffix(" letters"))


def other_script(text: str, trained: Counter) -> str | None:
    """A warning when a text is written mostly in a script that is rare in the texts a model learnt from (an
    English sentence for a model trained on Chinese titles); None when it is not, or cannot be told."""
    own = scripts([text])
    script = main_script(own)
    if script is None or not trained or own[script] * 2 < sum(own.values()):  # no letters, or a mix
        return None
    share = trained[script] / sum(trained.values())
    if share >= OTHER_SCRIPT:
        return None
    return _(
        "This text is written in {script}, but only {share} of the letters in this run's texts are {script} (they "
        "are mostly {main}): the model never learnt this language, so its answer means little. Type a text in the "
        "language of the data it was trained on.",
        script=script_words(script),
        share=percent(share),
        main=script_words(main_script(trained)),
    )


def run_texts(session: Session, run_id: int, sample: int = SCRIPT_SAMPLE) -> list[str]:
    """Up to `sample` of a finished run's test texts (stored with its predictions, kept when its dataset is deleted):
    the language of the data the run learnt from."""
    return list(session.scalars(select(Prediction.text).where(Prediction.run_id == run_id).limit(sample)))


def run_scripts(session: Session, run_id: int, sample: int = SCRIPT_SAMPLE) -> Counter:
    """Letters per script in a finished run's test texts."""
    return scripts(run_texts(session, run_id, sample))


@lru_cache(maxsize=1)
def _identifier():
    """py3langid's language identifier (its model ships inside the package), loaded once, when first needed."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def language_name(code: str) -> str:
    """A language code in the reader's words ('fr' -> 'French' / '法语'); a code without a name as it is."""
    return _(LANGUAGE_NAMES[code]) if code in LANGUAGE_NAMES else code


def languages(texts) -> Counter:
    """Texts per most likely language, e.g. {'en': 415, 'pcm': 33}; empty when the identifier cannot be used."""
    try:
        return Counter(_identifier().classify(text)[0] for text in texts if text.strip())
    except Exception:  # noqa: BLE001 - no identifier (not installed, unreadable model): no language is told
        return Counter()


def run_languages(session: Session, run_id: int, sample: int = SCRIPT_SAMPLE) -> Counter:
    """Texts per language among a finished run's test texts (the texts `run_scripts` reads)."""
    return languages(run_texts(session, run_id, sample))


def other_language(text: str, trained: Counter) -> str | None:
    """A warning when a text long enough to judge is, with confidence, in a language other than the run's texts'
    (a French sentence for a model trained on English titles); None when it is not, or cannot be told. Meant for
    texts in the run's script: `other_script` tells the others."""
    total = sum(trained.values())
    ours = [code for code, n in trained.most_common() if n >= OTHER_LANGUAGE * total]
    if not ours or len(text.split()) < MIN_WORDS or sum(map(str.isalpha, text)) < MIN_LETTERS:
        return None
    try:
        ranked = _identifier().rank(text)
    except Exception:  # noqa: BLE001 - a detector that fails tells nothing; the prediction still shows
        return None
    if sum(p for code, p in ranked if code in ours) > NOT_THE_RUNS:
        return None
    code, probability = ranked[0]
    run = _(" and ").join(map(language_name, ours))
    if probability >= 0.5:
        return _(
            "This text looks like {language}, but the run was trained on {languages} texts: its answer means little. "
            "Type a text in the language of the data it was trained on.",
            language=language_name(code),
            languages=run,
        )
    # The likeliest language is only a guess among close ones: none is named.
    return _(
        "This text does not look like the {languages} the run was trained on: its answer means little. Type a text "
        "in the language of the data it was trained on.",
        languages=run,
    )


@dataclass
class Coverage:
    """How much of a dataset's text one model knows, and, when too little, the models that may read it better."""

    model: str  # the model source measured
    unknown: dict[str, float | None]  # split -> share of its tokens unknown to the model
    looked: dict[str, int]  # split -> texts tokenized (an evenly spread sample of a large split)
    script: str | None  # the letters the data is mostly written in
    on_this_machine: dict[str, float | None] = field(default_factory=dict)  # a model here -> its unknown share
    needs_internet: tuple[str, ...] = ()  # models that read such text, downloaded once from Hugging Face

    @property
    def unknown_token_share(self) -> float | None:
        """The share of the training texts' tokens the model does not know, 0 to 1."""
        return self.unknown.get("train")

    @property
    def poor(self) -> bool:
        return (self.unknown_token_share or 0.0) >= POOR_SHARE

    def warning(self) -> str | None:
        """What the share means, in words, and the models to choose instead; None when the model knows the text."""
        if not self.poor:
            return None
        others = _(", ").join(
            _("{split} {share}", split=checking.split_name(s), share=percent(v))
            for s, v in self.unknown.items()
            if s != "train" and v is not None
        )
        model, share = models.describe(self.model), percent(self.unknown_token_share)
        if self.script == SCRIPT_NAMES["CJK"]:
            wanted = _("a Chinese or multilingual model reads it")
        else:
            wanted = _("a model for your language, or a multilingual one, reads it")
        if others:
            said = _(
                "The model {model} does not know {share} of your text: that share of the training texts' tokens is "
                "unknown to it ([UNK]; {others}). Results will be poor, however long it trains: {wanted}.",
                model=model,
                share=share,
                others=others,
                wanted=wanted,
            )
        else:
            said = _(
                "The model {model} does not know {share} of your text: that share of the training texts' tokens is "
                "unknown to it ([UNK]). Results will be poor, however long it trains: {wanted}.",
                model=model,
                share=share,
                wanted=wanted,
            )
        lines = [said]
        better = {s: v for s, v in self.on_this_machine.items() if v is not None and v < POOR_SHARE}
        if better:
            listed = _(", ").join(
                _("{model} ({share} unknown)", model=models.describe(s), share=percent(v))
                for s, v in sorted(better.items())
            )
            lines.append(_("On this machine (no internet needed): {models}.", models=listed))
        else:
            lines.append(_("No model on this machine reads it better."))
        if self.needs_internet:
            lines.append(
                _(
                    "Needs the internet once (then kept in the local cache): {models}, each chosen as 'A Hugging Face "
                    "model id' on Train.",
                    models=", ".join(self.needs_internet),
                )
            )
        return "\n\n".join(lines)


def local_models(settings: Settings) -> list[str]:
    """Models that load with no internet: the bundled one, the model folders under the model roots
    (LORALAB_MODEL_ROOTS, a folder or an owner/name folder), and the models in the local Hugging Face cache."""
    found = [models.BUNDLED]
    for root in settings.model_roots:
        configs = [*root.glob("*/config.json"), *root.glob("*/*/config.json")]
        found += sorted(str(c.parent) for c in configs)
    try:
        from huggingface_hub import scan_cache_dir

        found += sorted(r.repo_id for r in scan_cache_dir().repos if r.repo_type == "model")
    except Exception:  # noqa: BLE001 - no cache folder yet, or one that cannot be read: no cached model
        pass
    return found


def _offline_tokenizer(source: str, settings: Settings):
    """The tokenizer of a model of `local_models`: a cached Hugging Face model's from the cache only, never asked
    for online (its tokenizer files may not have been cached)."""
    if source == models.BUNDLED or Path(source).is_absolute():
        return models.load_tokenizer(source, settings)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source, local_files_only=True)


def on_this_machine(settings: Settings, texts: list[str], but: str) -> dict[str, float | None]:
    """Each model on this machine (but the one measured) -> the share of these texts' tokens it does not know."""
    out = {}
    skip = models.absolute_source(but)
    for source in [s for s in local_models(settings) if models.absolute_source(s) != skip][:MAX_CANDIDATES]:
        try:
            out[source] = unknown_share(_offline_tokenizer(source, settings), texts)
        except Exception:  # noqa: BLE001 - a folder or cache entry that does not load is no alternative
            continue
    return out


def measure(tokenizer, splits: dict[str, pd.Series], source: str, settings: Settings) -> Coverage:
    """The model's coverage of each split's texts (a spread sample of each); other models are measured only when
    it knows too little."""
    samples = {split: checking.spread_sample(texts) for split, texts in splits.items()}
    train = samples.get("train") or next(iter(samples.values()), [])
    found = Coverage(
        model=source,
        unknown={split: unknown_share(tokenizer, texts) if texts else None for split, texts in samples.items()},
        looked={split: len(texts) for split, texts in samples.items()},
        script=main_script(scripts(train)),
    )
    if found.poor:
        found.on_this_machine = on_this_machine(settings, train, source)
        wanted = READS_CHINESE if found.script == SCRIPT_NAMES["CJK"] else READS_MANY
        found.needs_internet = tuple(m for m in wanted if m not in found.on_this_machine)
    return found


def dataset_coverage(settings: Settings, dataset: Dataset, source: str) -> Coverage:
    """The coverage of a stored dataset by a model (ModelSourceError when the model cannot be loaded)."""
    tokenizer = models.load_tokenizer(source, settings)
    splits = {split: datasets.load_split(settings, dataset, split)["text"] for split in reading.SPLITS}
    return measure(tokenizer, splits, source, settings)
