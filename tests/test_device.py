"""Where training runs (CUDA, Apple silicon, CPU), in what precision, and the batch order that must stay random."""

import pytest
import torch

from core.training.device import pick_device, precision, training_device_text
from core.training.trainer import EncodedTexts, EpochSeededSampler


@pytest.mark.parametrize(
    "preference, cuda, mps, expected",
    [
        ("auto", True, True, "cuda"),  # an NVIDIA GPU first
        ("auto", False, True, "mps"),  # then Apple silicon
        ("auto", False, False, "cpu"),
        ("cpu", True, True, "cpu"),  # named: the CPU even beside a GPU
        (" MPS ", False, True, "mps"),
        ("", False, False, "cpu"),
    ],
)
def test_pick_device(preference, cuda, mps, expected):
    assert pick_device(preference, cuda=cuda, mps=mps) == expected


@pytest.mark.parametrize("preference, words", [("cuda", "NVIDIA"), ("mps", "Apple"), ("tpu", "must be one of")])
def test_pick_device_refuses_what_the_machine_lacks(preference, words):
    with pytest.raises(ValueError, match=words):
        pick_device(preference, cuda=False, mps=False)


def test_precision():
    assert precision("cpu", cpu_bf16=True) == "bf16"
    assert precision("cpu", cpu_bf16=False) == "fp32"
    assert precision("mps", cpu_bf16=True) == "fp32"


def test_train_page_line_names_the_device():
    assert "CPU" in training_device_text("cpu") or "GPU" in training_device_text("cpu")
    assert "must be one of" in training_device_text("tpu")
    assert "Ray" in training_device_text("auto", runner="ray")


def encoded(lengths: list[int]) -> EncodedTexts:
    return EncodedTexts({"input_ids": [[1] * n for n in lengths]}, [n % 3 for n in lengths])


def test_batch_order_is_random_and_ignores_text_length():
    """Length-grouped batches cost 4.5 points of accuracy on a 10-class news set: batches of similar lengths are
    batches of similar texts. The order must depend on the seed and epoch alone, never on the texts."""
    by_length = encoded(sorted(range(1, 201)))  # lengths rising with the index
    reversed_ = encoded(sorted(range(1, 201), reverse=True))
    a, b = EpochSeededSampler(by_length, seed=7), EpochSeededSampler(reversed_, seed=7)
    order = list(a)
    assert order == list(b) == torch.randperm(200, generator=torch.Generator().manual_seed(7)).tolist()
    assert sorted(order) == list(range(200))  # every example once
    batches = [order[i : i + 20] for i in range(0, 200, 20)]
    spreads = [max(batch) - min(batch) for batch in batches]  # index ~ length here
    assert min(spreads) > 100, "batches hold texts of every length, not one length band"
    a.set_epoch(1)
    assert list(a) != order and sorted(a) == list(range(200))  # another order each epoch, set by seed + epoch
    a.set_epoch(0)
    assert list(a) == order  # and the same again: a resumed run meets the batches an unbroken one met
