"""What a finished run saves: the model size counts the weights, the tokenizer apart."""

from __future__ import annotations

from types import SimpleNamespace

from core import models
from core.artifacts import save_artifact
from core.config import TrainConfig
from core.methods import wrap_model

CLASSES = ["a", "b", "c"]


def test_lora_model_size_counts_the_weights_and_the_tokenizer_apart(tiny_model, tmp_path):
    config = TrainConfig(method="lora", lora_r=2)
    model = wrap_model(models.load_classifier(tiny_model, CLASSES), config)
    tokenizer = models.load_tokenizer(tiny_model)
    run = SimpleNamespace(model_source=tiny_model)
    folder = tmp_path / "model"
    weights, tokenizer_bytes = save_artifact(model, tokenizer, run, config, CLASSES, folder)
    assert weights == (folder / "adapter_model.safetensors").stat().st_size
    tokenizer_files = [f for f in folder.iterdir() if f.name.startswith(("vocab", "tokenizer", "special_tokens"))]
    assert tokenizer_files and tokenizer_bytes == sum(f.stat().st_size for f in tokenizer_files)
    everything = sum(f.stat().st_size for f in folder.iterdir())
    assert weights + tokenizer_bytes < everything  # configs (adapter, lora_lab.json) are neither
