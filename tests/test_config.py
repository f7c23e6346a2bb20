"""Defaults people read (the command line's help) are the defaults runs record."""

import subprocess
import sys

import pytest

from core.training.config import DEFAULT_LEARNING_RATES, PRESETS, TrainConfig, defaults_in_words, preset_config


def test_help_states_the_learning_rates_a_run_records():
    shown = subprocess.run(
        [sys.executable, "-m", "core", "train", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert defaults_in_words() in " ".join(shown.split())  # argparse wraps lines
    for method, rate in DEFAULT_LEARNING_RATES.items():
        assert TrainConfig(method=method).learning_rate == rate
        assert f"{rate:g} for {'full' if method == 'full' else 'LoRA'}" in defaults_in_words()


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_trains_both_methods_and_says_what_it_is_for(name):
    for method in ("full", "lora"):
        assert preset_config(name, method).problems() == []
    assert PRESETS[name]["about"].strip()
