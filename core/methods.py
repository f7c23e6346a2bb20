"""The only place where full fine-tuning and LoRA differ: how the model is wrapped, and so which weights train."""

from __future__ import annotations

from core import models
from core.config import TrainConfig
from core.failures import TrainingError


def wrap_model(model, config: TrainConfig):
    """The only place where the methods differ."""
    if config.method == "full":
        return model
    from peft import LoraConfig, TaskType, get_peft_model

    lora = LoraConfig(
        task_type=TaskType.SEQ_CLS,  # marks the classification head as trainable and saved (modules_to_save)
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
    )
    try:
        return get_peft_model(model, lora)
    except ValueError as e:
        raise TrainingError(
            f"LoRA could not be applied: {e}. This model's attention layers may have other names; "
            "set the target modules to match them."
        ) from None


def count_params(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def param_counts(model_source: str, classes: list[str], config: TrainConfig) -> dict[str, tuple[int, int]]:
    """(trainable, total) parameters for each method with this model, classes and LoRA settings, before training.

    Loads the model once (seconds); callers cache the answer.
    """
    model = models.load_classifier(model_source, classes)
    counts = {"full": count_params(model)}
    counts["lora"] = count_params(wrap_model(model, TrainConfig.from_dict({**config.to_dict(), "method": "lora"})))
    return counts
