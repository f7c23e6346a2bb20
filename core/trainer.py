"""The transformers Trainer as the engine uses it, and what it is fed: texts tokenized once, random batches in an
order fixed by the seed and the epoch, a cheaper dropout mask on CPU, the dev-set metrics."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import accuracy_score
from transformers import Trainer

from core.evaluate import macro_f1


class EncodedTexts(torch.utils.data.Dataset):
    """Texts tokenized once, unpadded: the collator pads each batch to its own longest text."""

    def __init__(self, encodings: dict, labels):
        self.encodings, self.labels = encodings, list(labels)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        item = {k: v[i] for k, v in self.encodings.items()}
        item["labels"] = self.labels[i]
        return item


class FastDropout(torch.nn.Dropout):
    """nn.Dropout with a cheaper mask: 16 random bits per element, four from each 64-bit draw, where nn.Dropout
    draws a double per element. On a CPU the random draws are most of dropout's cost, and LoRA adds one dropout per
    adapted layer (18 in a 6-layer BERT) to the model's own: the masks were a quarter of a LoRA step (bench/).
    An element is dropped with probability p to within 1/65536; the random stream is torch's seeded generator."""

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        n = x.numel()
        bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None)
        keep = bits.view(torch.int16)[:n].view(x.shape) >= round(self.p * 65536) - 32768
        return x * (keep.to(x.dtype) * (1 / (1 - self.p)))


def use_fast_dropout(model) -> None:
    """Every plain nn.Dropout of the model (the model's own and LoRA's) becomes a FastDropout, in place: same
    module, same p, nothing saved differs."""
    for module in model.modules():
        if type(module) is torch.nn.Dropout and not module.inplace:
            module.__class__ = FastDropout


def dev_metrics(eval_pred) -> dict:
    preds = np.argmax(eval_pred.predictions, axis=-1)
    return {
        "accuracy": accuracy_score(eval_pred.label_ids, preds),
        "f1_macro": macro_f1(eval_pred.label_ids, preds),  # as the test split's
    }


class EpochSeededSampler(torch.utils.data.Sampler):
    """Every example once per epoch in a random order, as the Trainer's own sampler, but an order set by the seed and
    the epoch alone: the Trainer calls set_epoch at each epoch's start, so a run resumed mid-epoch meets the batches an
    unbroken run would have met.

    Random, not grouped by length: length-grouped batches padded less and trained 10-15 % faster, but cost 4.5 points
    of test accuracy on a 10-class Chinese news set (batches of similar lengths are batches of similar texts, often of
    one class), within seed noise on the demo set (bench/, README "Benchmark")."""

    def __init__(self, dataset, seed: int):
        self.size, self.seed = len(dataset), seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())


class LabTrainer(Trainer):
    def _get_train_sampler(self, train_dataset=None):
        return EpochSeededSampler(train_dataset or self.train_dataset, self.args.seed)
