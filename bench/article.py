"""The seed article's code, as a user would otherwise run it: the reference pipeline of the benchmark.

Kept as the article writes it (see docs/benchmarks.md): the whole set tokenized once with `padding=True` (every
example padded to the longest), a Dataset that builds tensors per item, `Trainer` with evaluation and a checkpoint
at every evaluation, `load_best_model_at_end`, `dataloader_drop_last`; then, as a separate script, the test loop:
the model reloaded (LoRA: `PeftModel.from_pretrained`, not merged), each batch of 32 tokenized with `padding=True`,
`max_length=64`, under `torch.no_grad`. Only the numbers the article hard-codes for its 180k rows are scaled to the
data (warmup share, evaluation cadence), identically for our engine.

Run by bench/train_bench.py in child processes:
    python bench/article.py train  --data DIR --model PATH --method full|lora --out DIR --epochs E --lr LR ...
    python bench/article.py test   --data DIR --model PATH --method full|lora --out DIR [--latency N]
Each prints one JSON object on its last line.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import time

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def read_split(data: str, split: str) -> tuple[list[str], list[int]]:
    df = pd.read_csv(f"{data}/{split}.csv", keep_default_na=False)
    return df["0"].astype(str).tolist(), df["1"].astype(int).tolist()


def lora_config(inference_mode: bool):
    from peft import LoraConfig, TaskType

    return LoraConfig(
        task_type=TaskType.SEQ_CLS,
        target_modules=["query", "key", "value"],
        inference_mode=inference_mode,
        r=8,
        lora_alpha=32,
        lora_dropout=0.1,
    )


class TextDataset(Dataset):
    def __init__(self, encodings, labels):
        self.encodings = encodings
        self.labels = labels

    def __getitem__(self, idx):
        item = {key: torch.tensor(val[idx]) for key, val in self.encodings.items()}
        item["labels"] = torch.tensor(self.labels[idx])
        return item

    def __len__(self):
        return len(self.labels)


def train(args) -> dict:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments, set_seed

    # The article seeds nothing before building the model, so its new head and adapters differ from run to run.
    # Seeded here as our engine is: both pipelines start from the same weights, and a rerun gives the same result.
    set_seed(args.seed)
    train_texts, train_labels = read_split(args.data, "train")
    eval_texts, eval_labels = read_split(args.data, "dev")
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=args.num_labels)
    train_encodings = tokenizer(train_texts, truncation=True, padding=True, max_length=args.max_length)
    eval_encodings = tokenizer(eval_texts, truncation=True, padding=True, max_length=args.max_length)
    train_dataset = TextDataset(train_encodings, train_labels)
    eval_dataset = TextDataset(eval_encodings, eval_labels)

    # The article: 5 epochs of 180k rows, eval every 125 steps, save every 250, warmup 1250 steps. Scaled here to
    # the engine's defaults (evaluations per epoch, warmup share) so that both pipelines do the same work.
    steps_per_epoch = max(1, len(train_dataset) // args.batch_size)  # dataloader_drop_last
    eval_steps = max(1, steps_per_epoch // args.evals_per_epoch)
    training_args = TrainingArguments(
        output_dir=f"{args.out}/results",
        save_strategy="steps",
        save_total_limit=1,
        eval_strategy="steps",
        save_steps=eval_steps,
        eval_steps=eval_steps,
        load_best_model_at_end=True,
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        warmup_steps=int(args.warmup_ratio * math.ceil(steps_per_epoch * args.epochs)),
        weight_decay=args.weight_decay,
        dataloader_drop_last=True,
        learning_rate=args.lr,
        seed=args.seed,
        use_cpu=not torch.cuda.is_available(),
        report_to="none",
        disable_tqdm=True,
    )
    if args.method == "lora":
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(inference_mode=False))
    trainer = Trainer(model=model, args=training_args, train_dataset=train_dataset, eval_dataset=eval_dataset)
    t1 = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - t1
    trainer.save_model(f"{args.out}/model")  # LoRA: the adapters and the head (modules_to_save)
    return {
        "train_seconds": train_seconds,
        "samples": trainer.state.global_step * args.batch_size,  # what it trained on (the last short batch dropped)
        "steps": trainer.state.global_step,
        "padded_length": len(train_encodings["input_ids"][0]),
        "peak_memory_mb": peak_rss_mb(),
    }


def load_for_test(args):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if args.method == "lora":
        from peft import PeftModel

        model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=args.num_labels)
        model = PeftModel.from_pretrained(model, model_id=f"{args.out}/model", config=lora_config(True))
    else:
        model = AutoModelForSequenceClassification.from_pretrained(f"{args.out}/model", num_labels=args.num_labels)
    return tokenizer, model


def test(args) -> dict:
    """The article's test script: scoring time of the test set and of single sentences, model already loaded."""
    texts, labels = read_split(args.data, "test")
    tokenizer, model = load_for_test(args)

    def collate_fn(batch):
        texts = [item["text"] for item in batch]
        labels = [item["label"] for item in batch]
        encoding = tokenizer(texts, padding=True, truncation=True, max_length=args.max_length, return_tensors="pt")
        encoding["labels"] = torch.tensor(labels)
        return encoding

    def predict(texts: list[str]) -> list[int]:
        # The article's datasets.Dataset.from_dict(...) serves rows as dicts; a list of dicts does the same.
        dataset = [{"text": t, "label": 0} for t in texts]
        predictions = []
        for batch in DataLoader(dataset, batch_size=args.batch_size, collate_fn=collate_fn):
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            with torch.no_grad():
                outputs = model(**inputs)
            logits = outputs.logits
            predictions.extend(torch.argmax(logits, dim=1).tolist())
        return predictions

    predict(texts[: args.batch_size])  # warm-up, as for our engine
    passes = []
    for _ in range(args.passes):  # the fastest pass: the one least disturbed by other processes
        t1 = time.perf_counter()
        predictions = predict(texts)
        passes.append(time.perf_counter() - t1)
    latencies = []
    for i in range(args.latency):
        sentence = texts[i % len(texts)]
        t1 = time.perf_counter()
        predict([sentence])
        latencies.append(time.perf_counter() - t1)
    return {"scoring_seconds": min(passes), "predictions": predictions, "latencies": latencies}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stage", choices=["train", "test"])
    parser.add_argument("--data", required=True, help="folder with train.csv, dev.csv, test.csv (text 0, label 1)")
    parser.add_argument("--model", required=True, help="model folder")
    parser.add_argument("--method", choices=["full", "lora"], required=True)
    parser.add_argument("--out", required=True, help="folder for checkpoints and the trained model")
    parser.add_argument("--num-labels", type=int, required=True)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--weight-decay", type=float, default=0.001)
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--evals-per-epoch", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--latency", type=int, default=200, help="single sentences to time")
    parser.add_argument("--passes", type=int, default=3, help="timed passes over the test set")
    args = parser.parse_args()
    result = train(args) if args.stage == "train" else test(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
