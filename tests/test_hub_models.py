"""Hugging Face ids: parameters are counted from the config on the meta device (no weights are downloaded or
built), the hub is asked about the files' sizes before any download, and each way an id can fail has its own
plain message. No network here: the hub's answers are monkeypatched with the hub client's own error classes."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import httpx2
import huggingface_hub
import pytest
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
from streamlit.testing.v1 import AppTest
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, BertConfig, ViTConfig

from core.data import checking, datasets, reading
from core.store.db import session_factory
from core.training import methods, models
from core.training.config import TrainConfig
from core.training.methods import count_params, wrap_model

ROOT = Path(__file__).resolve().parent.parent
HUB_ID = "some-org/some-model"
MB = 2**20


def files(*names_sizes) -> SimpleNamespace:
    """What model_info(files_metadata=True) answers: the repository's files with their sizes."""
    return SimpleNamespace(gated=False, siblings=[SimpleNamespace(rfilename=n, size=s) for n, s in names_sizes])


def http_error(cls, status: int):
    request = httpx2.Request("GET", f"https://huggingface.co/api/models/{HUB_ID}")
    return cls(f"{status} error for {HUB_ID}", response=httpx2.Response(status, request=request))


@pytest.fixture
def hub(monkeypatch):
    """A hub that is reachable and answers `hub.info` (or raises it); its config.json is `hub.config`. Loading
    weights is an error: nothing here may download or build a real model."""
    state = SimpleNamespace(info=files(("model.safetensors", 80 * MB), ("config.json", 600)), asked=[])
    state.config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2)

    def model_info(repo_id, **kwargs):
        state.asked.append(repo_id)
        if isinstance(state.info, Exception):
            raise state.info
        return state.info

    def config_from_pretrained(source, local_files_only=False, **kwargs):
        if local_files_only:
            raise OSError("not in the cache")
        return type(state.config).from_dict({**state.config.to_dict(), **kwargs})

    def no_weights(*args, **kwargs):
        raise AssertionError("a model's weights were loaded")

    monkeypatch.setattr(models, "_hub_reachable", lambda: True)
    monkeypatch.setattr(huggingface_hub, "model_info", model_info)
    monkeypatch.setattr(AutoConfig, "from_pretrained", config_from_pretrained)
    monkeypatch.setattr(AutoModelForSequenceClassification, "from_pretrained", no_weights)
    return state


def test_counting_on_the_meta_device_gives_the_loaded_models_counts(settings, tiny_model):
    config = TrainConfig(method="lora", lora_r=2)
    counts = methods.param_counts(tiny_model, ["a", "b", "c"], config, settings)
    model = models.load_classifier(tiny_model, ["a", "b", "c"], settings)
    assert counts["full"] == count_params(model)
    assert counts["lora"] == count_params(wrap_model(model, config))


def test_an_id_is_counted_from_its_config_without_downloading_weights(settings, hub):
    counts = methods.param_counts(HUB_ID, ["a", "b"], TrainConfig(method="lora"), settings)
    assert counts["full"][0] == counts["full"][1] > counts["lora"][0] > 0
    assert hub.asked == [HUB_ID], "the hub is asked about the files before the config is downloaded"


@pytest.mark.parametrize(
    "answer, config, expected",
    [
        (http_error(GatedRepoError, 403), None, f"The model '{HUB_ID}' is gated"),
        (http_error(RepositoryNotFoundError, 404), None, f"There is no model '{HUB_ID}' on Hugging Face"),
        (files(("pytorch_model.bin", 80 * MB), ("config.json", 600)), None, "has no safetensors weights"),
        (
            files(("model-00001-of-00002.safetensors", 3000 * MB), ("model-00002-of-00002.safetensors", 900 * MB)),
            None,
            "has 3,900 MB of weights, more than this server allows (2,000 MB, LORALAB_MAX_MODEL_MB)",
        ),
        (TimeoutError("timed out"), None, "Hugging Face did not answer"),
        (None, ViTConfig(), "is a vit model, which transformers cannot use as a text classifier"),
    ],
    ids=["gated", "not found", "no safetensors", "too large", "no answer", "not a text classifier"],
)
def test_each_way_an_id_fails_has_its_own_message(settings, hub, answer, config, expected):
    if answer is not None:
        hub.info = answer
    if config is not None:
        hub.config = config
    with pytest.raises(models.ModelSourceError) as refused:
        methods.param_counts(HUB_ID, ["a", "b"], TrainConfig(method="lora"), settings)  # the Train page
    assert expected in str(refused.value)
    with pytest.raises(models.ModelSourceError) as refused:
        models.load_classifier(HUB_ID, ["a", "b"], settings)  # a run's training process
    assert expected in str(refused.value)


def test_offline_says_so_before_asking(settings, hub, monkeypatch):
    monkeypatch.setattr(models, "_hub_reachable", lambda: False)
    with pytest.raises(models.ModelSourceError, match="cannot reach Hugging Face"):
        models.load_tokenizer(HUB_ID, settings)
    assert hub.asked == []


def test_the_size_cap_holds_for_local_folders_too(settings, tiny_model, monkeypatch):
    from core.store.settings import get_settings

    monkeypatch.setenv("LORALAB_MAX_MODEL_MB", "0.01")
    with pytest.raises(models.ModelSourceError, match="more than this server allows"):
        models.load_classifier(tiny_model, ["a", "b"], get_settings())


def test_the_train_page_counts_an_id_and_names_a_gated_one(settings, csv_folder, tiny_model, hub, monkeypatch):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)  # the id's tokenizer, "downloaded" (for the estimates)
    downloaded = lambda source, local_files_only=False, **kwargs: tokenizer  # noqa: E731
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", downloaded)
    monkeypatch.setattr("core.jobs.worker.ensure_worker", lambda settings: False)
    check = checking.check_dataset(reading.files_from_folder(csv_folder), settings)
    with session_factory(settings.db_url)() as s:
        datasets.save_dataset(s, settings, check, "tiny")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90).run()
    at.switch_page("pages/train.py").run()
    at.radio(key="train_model_kind").set_value("A Hugging Face model id").run()
    at.text_input(key="train_model_name").input(HUB_ID).run()
    assert not at.exception and not at.error
    assert len(at.metric) == 2, "both methods' trained weights are shown"
    hub.info = http_error(GatedRepoError, 403)
    at.text_input(key="train_model_name").input("some-org/another-model").run()
    assert not at.exception
    assert "is gated" in "\n".join(e.value for e in at.error)
    assert at.button(key="train_pair").disabled
