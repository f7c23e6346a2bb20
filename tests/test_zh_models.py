"""The training engine's own words in Chinese (#28): where the next run trains, why a model source is refused, the
bundled model's name, Predict's warnings on a text in another script or language, and why a run cannot predict.
Each message is asked for in Chinese, with its names and numbers in place and no English word left but theirs,
and in English, exactly as before."""

from __future__ import annotations

import dataclasses
import platform
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from huggingface_hub.errors import DisabledRepoError, GatedRepoError, RepositoryNotFoundError
from transformers import ViTConfig

from core import i18n
from core.training import coverage, device, models, predict
from tests.english import words_left
from tests.test_hub_models import HUB_ID, files, http_error, hub  # noqa: F401 - hub: a monkeypatched hub's fixture

MB = 2**20


def both(make) -> tuple[str, str]:
    """A message in English and in Chinese: what `make()` returns, or the text of what it raises."""
    out = []
    for code in ("en", "zh"):
        with i18n.speaking(code):
            try:
                out.append(str(make()))
            except (ValueError, models.ModelSourceError, predict.RunNotReady) as e:
                out.append(str(e))
    return out[0], out[1]


def chinese(text: str, *kept: str) -> bool:
    """No English word in the text but the names it was given (`kept`: a model id's, a folder's)."""
    return words_left(text, {w.lower() for w in kept}) == []


# --- core/training/device.py


@pytest.fixture
def cpu_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device, "mps_available", lambda: False)
    monkeypatch.setattr(device, "cpu_model", lambda: "Intel Xeon Platinum 8480")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 16)


def test_the_train_pages_device_line_on_a_cpu(cpu_only):
    en, zh = both(lambda: device.training_device_text("auto"))
    assert en == (
        "Training runs on this machine's CPU: Intel Xeon Platinum 8480 (16 threads): no GPU was found, so larger "
        "runs take a while."
    )
    assert (
        en == f"Training runs on this machine's {device.device_name('cpu')}: no GPU was found, so larger runs "
        "take a while."
    ), "the line names the device as runs record it"
    assert zh == (
        "训练在本机的 CPU 上进行：`Intel Xeon Platinum 8480`（16 个线程）。没有找到 GPU，所以较大的运行要花一些时间。"
    )
    assert chinese(zh), "the processor's name is code: the Train page of any machine reads as Chinese"
    with i18n.speaking("zh"):
        assert device.device_name("cpu") == "CPU: Intel Xeon Platinum 8480 (16 threads)", "recorded in English"


def test_the_train_pages_device_line_on_a_gpu(monkeypatch):
    monkeypatch.setattr(device, "pick_device", lambda preference: "cuda")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: "NVIDIA H100 80GB HBM3")
    assert both(device.training_device_text) == (
        "Training runs on this machine's GPU: NVIDIA H100 80GB HBM3.",
        "训练在本机的 GPU 上进行：`NVIDIA H100 80GB HBM3`。",
    )
    monkeypatch.setattr(device, "pick_device", lambda preference: "mps")
    monkeypatch.setattr(platform, "machine", lambda: "arm64")
    en, zh = both(device.training_device_text)
    assert en == f"Training runs on this machine's GPU: {device.device_name('mps')}."
    assert en == "Training runs on this machine's GPU: Apple silicon GPU (MPS), arm64."
    assert zh == "训练在本机的 GPU 上进行：Apple 芯片 GPU（MPS），`arm64`。"
    assert chinese(zh, "Apple"), "the machine's names are code: a page of any machine reads as Chinese"


def test_the_train_pages_device_line_on_ray_and_with_a_wrong_setting():
    assert both(lambda: device.training_device_text(runner="ray")) == (
        "Runs train as Ray jobs on the cluster, one GPU each where the cluster has GPUs.",
        "每个运行作为 Ray 任务在集群上训练；集群有 GPU 时，每个运行用一块 GPU。",
    )
    en, zh = both(lambda: device.training_device_text("tpu"))
    assert en == "LORALAB_DEVICE must be one of auto, cuda, mps, cpu, not 'tpu'."
    assert zh == "`LORALAB_DEVICE` 必须是 auto, cuda, mps, cpu 之一，而不是“tpu”。"


@pytest.mark.parametrize(
    "preference, english, words",
    [
        (
            "cuda",
            "LORALAB_DEVICE is 'cuda' but torch sees no NVIDIA GPU: install a CUDA build of torch.",
            "NVIDIA 显卡",
        ),
        ("mps", "LORALAB_DEVICE is 'mps' but this torch has no Apple silicon GPU (MPS) to use.", "Apple 芯片"),
    ],
)
def test_a_device_the_machine_lacks(preference, english, words):
    en, zh = both(lambda: device.pick_device(preference, cuda=False, mps=False))
    assert en == english
    assert words in zh and chinese(zh, "Apple", "NVIDIA")


# --- core/training/models.py


def test_the_bundled_models_name():
    assert both(lambda: models.describe(models.BUNDLED)) == (
        "all-MiniLM-L6-v2 (bundled, offline)",
        "all-MiniLM-L6-v2（自带，无需联网）",
    )
    assert both(lambda: models.describe("bert-base-chinese")) == ("bert-base-chinese", "bert-base-chinese")


def test_a_model_folder_that_cannot_be_read(settings, tmp_path):
    root = tmp_path / "models"
    (root / "empty").mkdir(parents=True)
    here = dataclasses.replace(settings, model_roots=(root,))
    roots = f"{root}, {settings.data_dir}"
    outside = tmp_path / "elsewhere"
    outside.mkdir()

    en, zh = both(lambda: models.resolve(str(outside), here))
    assert en == (
        f"The model folder {outside} is outside the folders this server reads models from ({roots}). Move or copy it "
        "into one of them, or ask the administrator to add its folder to LORALAB_MODEL_ROOTS."
    )
    assert zh == (
        f"模型文件夹 {outside} 不在本服务器读取模型的文件夹（{roots}）之内。"
        "请把它移动或复制到其中一个文件夹里，或请管理员把它所在的文件夹加入 `LORALAB_MODEL_ROOTS`。"
    )
    en, zh = both(lambda: models.resolve("models/../x", here))
    assert en == "The model path models/../x contains '..'. Give the folder's full path."
    assert zh == "模型路径 models/../x 含有 `..`。请给出文件夹的完整路径。"
    en, zh = both(lambda: models.resolve(str(root / "gone"), here))
    assert en == f"The model folder {root / 'gone'} does not exist. Check the path."
    assert zh == f"模型文件夹 {root / 'gone'} 不存在。请检查路径。"
    en, zh = both(lambda: models.resolve(str(root / "empty"), here))
    assert en == f"The folder {root / 'empty'} has no config.json, so it is not a Hugging Face model folder."
    assert zh == f"文件夹 {root / 'empty'} 里没有 config.json，所以它不是 Hugging Face 模型文件夹。"


def test_weights_that_are_pickled_or_too_large(settings, tmp_path):
    en, zh = both(lambda: models.check_folder(tmp_path, "my-model", settings))
    assert en.startswith("The model 'my-model' has no safetensors weights (only pickled ones, such as ")
    assert zh.startswith("模型“my-model”没有 safetensors 格式的权重") and chinese(zh, "my", "model")
    small = dataclasses.replace(settings, max_model_mb=1500)
    en, zh = both(lambda: models._check_size("org/big", 2600 * MB, small))
    assert en == (
        "The model 'org/big' has 2,600 MB of weights, more than this server allows (1,500 MB, LORALAB_MAX_MODEL_MB). "
        "Choose a smaller model, or ask the administrator to raise the limit."
    )
    assert zh == (
        "模型“org/big”的权重有 2,600 MB，超过了本服务器允许的大小（1,500 MB，`LORALAB_MAX_MODEL_MB`）。请选择更小的"
        "模型，或请管理员提高这个上限。"
    )


@pytest.mark.parametrize(
    "answer, english, words",
    [
        (
            http_error(GatedRepoError, 403),
            f"The model '{HUB_ID}' is gated: its owners must grant access first.",
            f"模型“{HUB_ID}”需要授权",
        ),
        (
            http_error(RepositoryNotFoundError, 404),
            f"There is no model '{HUB_ID}' on Hugging Face (or it is private).",
            f"Hugging Face 上没有模型“{HUB_ID}”（或者它是私有的）",
        ),
        (
            http_error(DisabledRepoError, 403),
            f"The model '{HUB_ID}' has been disabled on Hugging Face. Choose another.",
            f"模型“{HUB_ID}”已在 Hugging Face 上被停用。",
        ),
        (
            TimeoutError("timed out"),
            f"Hugging Face did not answer about the model '{HUB_ID}' (TimeoutError). Try again later, or use the "
            "bundled model.",
            f"Hugging Face 没有回答关于模型“{HUB_ID}”的查询（TimeoutError）。请稍后再试，或使用自带模型。",
        ),
        (
            files(("model.safetensors", 4000 * MB)),
            f"The model '{HUB_ID}' has 4,000 MB of weights",
            f"模型“{HUB_ID}”的权重有 4,000 MB，超过了",
        ),
    ],
    ids=["gated", "not found", "disabled", "no answer", "too large"],
)
def test_each_way_a_hub_id_fails(settings, hub, answer, english, words):  # noqa: F811 - hub, the fixture
    hub.info = answer
    en, zh = both(lambda: models.check_hub_model(HUB_ID, settings))
    assert en.startswith(english)
    assert words in zh and chinese(zh, "TimeoutError", "google", "bert", "base", "chinese", "org", "model")


def test_offline_and_a_model_that_is_no_text_classifier(settings, hub, monkeypatch):  # noqa: F811
    hub.config = ViTConfig()
    en, zh = both(lambda: models.load_config(HUB_ID, settings))
    assert en == (
        f"The model '{HUB_ID}' is a vit model, which transformers cannot use as a text classifier. Choose a "
        "BERT-style text model (e.g. bert-base-chinese)."
    )
    assert zh == (
        f"模型“{HUB_ID}”是 `vit` 类型的模型，transformers 无法把它用作文本分类器。请选择 BERT 类的文本模型（例如 "
        "bert-base-chinese）。"
    )
    monkeypatch.setattr(models, "_hub_reachable", lambda: False)
    en, zh = both(lambda: models.check_hub_model(HUB_ID, settings))
    assert en == (
        f"The model '{HUB_ID}' is not in this machine's Hugging Face cache, and this machine cannot reach Hugging "
        "Face. Use the bundled model, or download the model on a connected machine and give its folder."
    )
    assert zh == (
        f"模型“{HUB_ID}”不在本机的 Hugging Face 缓存中，而本机连不上 Hugging Face。"
        "请使用自带模型，或在联网的电脑上下载这个模型，再给出它的文件夹。"
    )


def test_a_model_that_does_not_load(settings, tiny_model, hub, monkeypatch):  # noqa: F811
    def broken(source, **kwargs):
        raise OSError("file is truncated")

    en, zh = both(lambda: models._load(broken, tiny_model, settings, weights=False))
    assert en == f"The model folder {tiny_model} could not be loaded: file is truncated"
    assert zh == f"无法加载模型文件夹 {tiny_model}：file is truncated"
    monkeypatch.setattr(models, "_cached_folder", lambda repo_id: None)
    en, zh = both(lambda: models._load(broken, HUB_ID, settings, weights=False))
    assert en == f"The model '{HUB_ID}' could not be downloaded from Hugging Face: file is truncated"
    assert zh == f"无法从 Hugging Face 下载模型“{HUB_ID}”：file is truncated"


# --- core/training/coverage.py: Predict's warnings

CHINESE_RUN = Counter({"Chinese characters": 900})
ENGLISH_RUN = Counter({"Latin letters": 990, "Chinese characters": 10})
FRENCH = "Le gouvernement annonce une baisse des impôts pour les familles"


def test_a_text_in_another_script():
    en, zh = both(lambda: coverage.other_script("Chelsea win the cup final", CHINESE_RUN))
    assert en == (
        "This text is written in Latin letters, but only 0.0 % of the letters in this run's texts are Latin letters "
        "(they are mostly Chinese characters): the model never learnt this language, so its answer means little. "
        "Type a text in the language of the data it was trained on."
    )
    assert zh == (
        "这段文本是用拉丁字母写的，但这个运行的文本中只有 0.0% 的字母是拉丁字母（大多是汉字）："
        "模型从没学过这种语言，所以它的回答没有什么意义。请输入与它训练数据同一种语言的文本。"
    )
    en, zh = both(lambda: coverage.other_script("央行宣布下调利率", ENGLISH_RUN))
    assert "written in Chinese characters, but only 1.0 % of the letters" in en and "mostly Latin letters" in en
    assert "是用汉字写的" in zh and "只有 1.0% 的字母是汉字（大多是拉丁字母）" in zh and chinese(zh)


def test_scripts_without_a_name_of_their_own():
    assert coverage._script("ᚠ") == "Runic letters"
    with i18n.speaking("zh"):
        assert coverage.script_words("Runic letters") == "Runic 字母"
        assert coverage.script_words("Cyrillic letters") == "西里尔字母"
        assert coverage.script_words(coverage._script("я")) == "西里尔字母"
    assert coverage.script_words("Runic letters") == "Runic letters"
    assert coverage.script_words("Cyrillic letters") == "Cyrillic letters"


def test_a_text_in_another_language():
    english = Counter({"en": 450, "fr": 50})
    en, zh = both(lambda: coverage.other_language("Die Regierung plant neue Steuern für Unternehmen", english))
    assert en == (
        "This text looks like German, but the run was trained on English and French texts: its answer means little. "
        "Type a text in the language of the data it was trained on."
    )
    assert zh == (
        "这段文本看起来是德语，但这个运行是用英语、法语文本训练的：它的回答没有什么意义。"
        "请输入与它训练数据同一种语言的文本。"
    )
    with i18n.speaking("zh"):
        assert coverage.language_name("pcm") == "pcm", "a language without a name is shown as its code"


def test_a_text_whose_language_is_only_a_guess(monkeypatch):
    identifier = SimpleNamespace(rank=lambda text: [("fr", 0.4), ("it", 0.35), ("es", 0.25)])
    monkeypatch.setattr(coverage, "_identifier", lambda: identifier)
    en, zh = both(lambda: coverage.other_language(FRENCH, Counter({"en": 500})))
    assert en == (
        "This text does not look like the English the run was trained on: its answer means little. Type a text in "
        "the language of the data it was trained on."
    )
    assert zh == "这段文本看起来不像这个运行训练时用的英语：它的回答没有什么意义。请输入与它训练数据同一种语言的文本。"


# --- core/training/predict.py


def run(status: str, artifact_path: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(id=7, status=status, artifact_path=artifact_path)


@pytest.mark.parametrize(
    "status, words",
    [
        ("queued", "还在排队"),
        ("running", "还在训练中"),
        ("failed", "失败了"),
        ("cancelled", "已取消"),
        ("crashed", "意外中断了"),
        ("paused", "的状态是 paused"),  # a status without a sentence of its own
    ],
)
def test_a_run_that_has_not_completed(settings, status, words):
    en, zh = both(lambda: predict.artifact_folder(settings, run(status)))
    assert en == f"Run 7 is {status}; only completed runs can predict."
    assert zh == f"运行 7 {words}；只有已完成的运行才能预测。"


def test_a_completed_run_without_its_model(settings):
    en, zh = both(lambda: predict.artifact_folder(settings, run("completed")))
    assert en == "Run 7 finished without saving a model, so it cannot predict."
    assert zh == "运行 7 结束时没有保存模型，所以不能预测。"
    en, zh = both(lambda: predict.artifact_folder(settings, run("completed", "runs/7/model")))
    folder = settings.data_dir / "runs/7/model"
    assert en == f"Run 7's model files are missing from {folder}."
    assert zh == f"运行 7 的模型文件不在 {folder} 中了。"


def test_a_lora_run_whose_base_model_changed(settings, tmp_path, monkeypatch):
    import json

    import transformers

    (tmp_path / "lora_lab.json").write_text(
        json.dumps({"method": "lora", "model_source": models.BUNDLED, "base_revision": "sha256 " + "a" * 64}),
        encoding="utf-8",
    )
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda folder: None)
    monkeypatch.setattr(models, "revision", lambda source, settings: "sha256 " + "b" * 64)
    en, zh = both(lambda: predict.load_artifact(Path(tmp_path), settings))
    then, now = "sha256 " + "a" * 12, "sha256 " + "b" * 12
    assert en == (
        f"The base model all-MiniLM-L6-v2 (bundled, offline) has changed since this run was trained ({then} then, "
        f"{now} now): its LoRA adapters fit only the old weights. Restore that model, or train the run again."
    )
    assert zh == (
        f"这个运行训练之后，基础模型 all-MiniLM-L6-v2（自带，无需联网） 已经变了（当时是 {then}，现在是 {now}）："
        "它的 LoRA 适配器只适用于旧的权重。请恢复那个模型，或重新训练这个运行。"
    )


def test_why_a_training_process_ended_is_said_in_chinese_and_unchanged_in_english():
    from core.jobs.runners import death_reason

    english = death_reason(-9, "/tmp/train.log")
    assert english == (
        "The training process was killed (SIGKILL) before it finished. This usually means the machine ran out of "
        "memory, or someone stopped the process. Metrics logged so far are kept."
    )
    with i18n.speaking("zh"):
        assert death_reason(-9, "/tmp/train.log").startswith("训练进程在完成前被终止（SIGKILL）")
        assert death_reason(3, "/tmp/train.log") == (
            "训练进程已退出（退出码 3），没有记录结果。日志在 /tmp/train.log。已记录的指标都会保留。"
        )
