"""Which device a run trains on, and what it measured there."""

from __future__ import annotations

import platform
import resource
from pathlib import Path

import torch

from core.i18n import _, number

DEVICES = ("auto", "cuda", "mps", "cpu")


def mps_available() -> bool:
    """Apple silicon's GPU, where this build of torch has it."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def pick_device(preference: str = "auto", *, cuda: bool | None = None, mps: bool | None = None) -> str:
    """The device training uses: an NVIDIA GPU (CUDA) first, then Apple silicon (MPS), else the CPU. `preference`
    (LORALAB_DEVICE) names one instead; a device this machine lacks is an error in plain words. `cuda` and `mps` say
    what the machine has (default: ask torch)."""
    cuda = torch.cuda.is_available() if cuda is None else cuda
    mps = mps_available() if mps is None else mps
    preference = (preference or "auto").strip().lower()
    if preference not in DEVICES:
        raise ValueError(
            _(
                "LORALAB_DEVICE must be one of {devices}, not '{preference}'.",
                devices=", ".join(DEVICES),
                preference=preference,
            )
        )
    if preference == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if preference == "cuda" and not cuda:
        raise ValueError(_("LORALAB_DEVICE is 'cuda' but torch sees no NVIDIA GPU: install a CUDA build of torch."))
    if preference == "mps" and not mps:
        raise ValueError(_("LORALAB_DEVICE is 'mps' but this torch has no Apple silicon GPU (MPS) to use."))
    return preference


def precision(device: str, cpu_bf16: bool) -> str:
    """Mixed precision for training on `device`: bf16 where the hardware computes it natively (recent NVIDIA GPUs,
    CPUs with AMX / AVX-512 BF16), fp16 on older NVIDIA GPUs, float32 on Apple silicon (its bf16 autocast is not
    supported by every op and gains little there) and on other CPUs (bf16 is emulated there, and slower)."""
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device == "cpu" and cpu_bf16:
        return "bf16"
    return "fp32"


def cpu_model() -> str:
    """The processor's model name (Linux's /proc/cpuinfo), else what the platform calls it."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def device_name(device: str = "cpu") -> str:
    """The device in words, as runs record it (always English: runs on one device are compared by this name)."""
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    if device == "mps":
        return f"Apple silicon GPU (MPS), {platform.machine()}"
    return f"CPU: {cpu_model()} ({torch.get_num_threads()} threads)"


def peak_memory_mb(device: str = "cpu") -> float:
    """The most memory training held: GPU memory allocated on CUDA; elsewhere the process's peak resident memory
    (on Apple silicon the GPU shares the machine's memory)."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if platform.system() == "Darwin" else rss / 1024  # bytes on macOS, kilobytes on Linux


def training_device_text(preference: str = "auto", runner: str = "local") -> str:
    """One line for the Train page: where the next run trains, in the reader's words."""
    if runner == "ray":
        return _("Runs train as Ray jobs on the cluster, one GPU each where the cluster has GPUs.")
    try:
        device = pick_device(preference)
    except ValueError as e:
        return str(e)
    if device == "cpu":
        # The thread count decides no word's form in English here ("1 threads" as device_name records it), so `_`.
        return _(
            "Training runs on this machine's CPU: {cpu} ({threads} threads): no GPU was found, so larger runs take a "
            "while.",
            cpu=cpu_model(),
            threads=number(torch.get_num_threads()),
        )
    if device == "mps":
        return _(
            "Training runs on this machine's GPU: Apple silicon GPU (MPS), {machine}.", machine=platform.machine()
        )
    return _("Training runs on this machine's GPU: {gpu}.", gpu=device_name(device))
