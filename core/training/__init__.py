"""One training path for full fine-tuning and LoRA: the run's config, the base model and how a method wraps it, the
Hugging Face Trainer, what a run records while it trains, saving its model and loading it to predict.

May import core.data, core.store and core.words."""
