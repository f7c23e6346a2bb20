"""The only place where full fine-tuning and LoRA differ: how the model is wrapped, and so which weights train."""

from __future__ import annotations

from core.store.settings import Settings
from core.training import models
from core.training.config import TrainConfig
from core.training.failures import TrainingError

HEADS = ("classifier", "score")  # what peft's SEQ_CLS task trains and saves by itself


def wrap_model(model, config: TrainConfig, new_modules: list[str] = ()):
    """The only place where the methods differ. `new_modules`: those initialised at random when the model loaded
    (models.load_base); LoRA trains and saves them whole, as it does the head, so that a reload reproduces them."""
    if config.method == "full":
        return model
    from peft import LoraConfig, TaskType, get_peft_model

    targets = set(config.target_modules)
    random_targets = [m for m in new_modules if m.rsplit(".", 1)[-1] in targets]
    if random_targets:
        raise TrainingError(
            f"The model's checkpoint lacks the weights of {', '.join(random_targets[:3])}, which LoRA would adapt: "
            "LoRA cannot train on random base weights. Use full fine-tuning, or a model folder with all its weights."
        )
    lora = LoraConfig(
        task_type=TaskType.SEQ_CLS,  # marks the classification head as trainable and saved (modules_to_save)
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
        modules_to_save=[m for m in new_modules if m.rsplit(".", 1)[-1] not in HEADS] or None,
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


def param_counts(
    model_source: str, classes: list[str], config: TrainConfig, settings: Settings
) -> dict[str, tuple[int, int]]:
    """(trainable, total) parameters for each method with this model, classes and LoRA settings, before training.

    Counted on the meta device from the model's configuration: no weights are downloaded or read, so a dashboard
    user typing the id of a huge model costs the server nothing. (Modules missing from a checkpoint, which LoRA
    then trains too, are not known before the weights are read: the run records its own counts.)
    """
    model = models.classifier_on_meta(models.load_config(model_source, settings, num_labels=len(classes)))
    counts = {"full": count_params(model)}
    lora = TrainConfig.from_dict({**config.to_dict(), "method": "lora"})
    counts["lora"] = count_params(wrap_model(model, lora))
    return counts
