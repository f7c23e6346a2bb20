"""What a finished run saves: the model size counts the weights, the tokenizer apart; a LoRA run saves every module
that its base drew at random as it loaded, and records which base weights it was trained on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from sqlalchemy import select

from core.jobs.runs import create_run
from core.store.db import Prediction, RunStatus, session_factory
from core.store.settings import get_settings
from core.training import models
from core.training.artifacts import save_artifact
from core.training.config import TrainConfig
from core.training.methods import wrap_model
from core.training.predict import RunNotReady, load_run
from core.training.train import train_run
from tests.helpers import ROOT, get_run, store

CLASSES = ["a", "b", "c"]
FAST = {"epochs": 2, "batch_size": 16, "evals_per_epoch": 1, "max_length": 32}


def test_lora_model_size_counts_the_weights_and_the_tokenizer_apart(tiny_model, tmp_path):
    config = TrainConfig(method="lora", lora_r=2)
    model = wrap_model(models.load_classifier(tiny_model, CLASSES, get_settings()), config)
    tokenizer = models.load_tokenizer(tiny_model, get_settings())
    run = SimpleNamespace(model_source=tiny_model, uid="0123abcd", base_revision=None)
    folder = tmp_path / "model"
    weights, tokenizer_bytes = save_artifact(model, tokenizer, run, config, CLASSES, folder)
    assert weights == (folder / "adapter_model.safetensors").stat().st_size
    tokenizer_files = [f for f in folder.iterdir() if f.name.startswith(("vocab", "tokenizer", "special_tokens"))]
    assert tokenizer_files and tokenizer_bytes == sum(f.stat().st_size for f in tokenizer_files)
    everything = sum(f.stat().st_size for f in folder.iterdir())
    assert weights + tokenizer_bytes < everything  # configs (adapter, lora_lab.json) are neither


@pytest.fixture(scope="module")
def no_pooler_model(tmp_path_factory, tiny_model) -> str:
    """The tiny BERT saved without its pooler's weights, as some checkpoints are: the pooler is drawn at random
    whenever it loads."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path_factory.mktemp("no-pooler-bert")
    for f in Path(tiny_model).iterdir():
        shutil.copy(f, folder / f.name)
    weights = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in weights.items() if "pooler" not in k}, folder / "model.safetensors", {"format": "pt"})
    return str(folder)


RELOAD = (
    "import json, sys\n"
    "from core.store.db import Run, session_factory\nfrom core.training.predict import load_run\n"
    "from core.store.settings import get_settings\n"
    "st = get_settings(sys.argv[1])\n"
    "with session_factory(st.db_url)() as s:\n"
    "    run = s.get(Run, int(sys.argv[2]))\n"
    "print(json.dumps(load_run(st, run).predict_proba(json.loads(sys.argv[3])).tolist()))\n"
)


def test_lora_saves_modules_the_base_lacked_so_a_fresh_process_reproduces_its_predictions(
    settings, csv_folder, no_pooler_model
):
    base, new_modules = models.load_base(no_pooler_model, CLASSES, settings)
    assert new_modules == ["bert.pooler.dense", "classifier"]
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        run = create_run(s, dataset, no_pooler_model, TrainConfig(method="lora", **FAST), status=RunStatus.RUNNING)
    assert train_run(settings, run.id) == RunStatus.COMPLETED
    run = get_run(settings, run.id)
    assert run.base_revision == models.revision(no_pooler_model, settings) and run.base_revision.startswith("sha256 ")
    folder = settings.data_dir / run.artifact_path
    assert "bert.pooler.dense" in json.loads((folder / "adapter_config.json").read_text())["modules_to_save"]

    with session_factory(settings.db_url)() as s:
        stored = s.scalars(select(Prediction).where(Prediction.run_id == run.id).order_by(Prediction.idx)).all()
    texts = [p.text for p in stored]
    env = {**os.environ, "LORALAB_DATA_DIR": str(settings.data_dir)}
    command = [sys.executable, "-c", RELOAD, settings.db_url, str(run.id), json.dumps(texts)]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    reloaded = np.array(json.loads(out.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(reloaded, np.array([p.probs for p in stored]), atol=1e-4)

    # The base's weights changed since: the adapters no longer fit them, and Predict says so.
    from safetensors.torch import load_file, save_file

    weights = load_file(Path(no_pooler_model) / "model.safetensors")
    weights = {k: v + 0.01 if k.endswith("query.weight") else v for k, v in weights.items()}
    save_file(weights, Path(no_pooler_model) / "model.safetensors", {"format": "pt"})
    with pytest.raises(RunNotReady, match="has changed since this run was trained"):
        load_run(settings, run)
