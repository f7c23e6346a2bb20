"""How busy the machine is while a run trains: the share of the CPUs other work takes, and how much a timing taken
under that load is slowed."""

from __future__ import annotations

import os

MIN_SHARE = 0.05  # a timing is taken back to a quiet machine by at most 20x (measured_slowdown)
# A CPU timing whose threads got less of the CPU than this while ready to run was held back by other work: its time is
# not used. Measured (bench/estimate_bench.py --probe-load 2): probes at a share of 0.50 took 3.1-4.3x a quiet step,
# not 2x, since threads that take turns with other programs also wait for each other; 1 / share corrects only what
# is near 1.
QUIET_SHARE = 0.9


def cpu_slowdown(load_average: float | None, cpus: int | None) -> float:
    """How much slower than alone a run trains on a CPU this busy: with a 1-minute load average above the number of
    CPUs, each runnable process gets about cpus / load of them. 1 when unknown or not busy."""
    if not load_average or not cpus:
        return 1.0
    return max(1.0, load_average / cpus)


def scheduler_times() -> dict[str, tuple[int, int]] | None:
    """Each thread of this process: nanoseconds it has run on a CPU, and waited for one while ready to run (Linux's
    scheduler statistics); None where the system does not say."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    out = {}
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/schedstat", encoding="ascii") as f:
                ran, waited = f.read().split()[:2]
            out[task] = (int(ran), int(waited))
        except (OSError, ValueError):
            continue  # a thread that ended meanwhile
    return out or None


def cpu_share(before: dict | None, after: dict | None) -> float | None:
    """Between two scheduler_times() readings, the share of the time this process's threads were ready to run that
    they ran: about 1 where the machine had a CPU free for each, 0.5 where they had to take turns with as much other
    work (2 training threads beside 2 busy programs on 2 CPUs). A thread that waits for another thread, or for the
    disk, is not ready to run: only other programs' work lowers it. None where not known."""
    if not before or not after:
        return None
    ran = waited = 0
    for task, (r, w) in after.items():
        r0, w0 = before.get(task, (0, 0))
        ran, waited = ran + r - r0, waited + w - w0
    return ran / (ran + waited) if ran > 0 and waited >= 0 else None


def held_back(share: float | None) -> bool:
    """Whether a CPU timing with this share (cpu_share) was held back too much by other work to say this machine's
    speed. Unknown shares (older runs, not Linux) are not: the load average corrects those."""
    return share is not None and share < QUIET_SHARE


def measured_slowdown(share: float | None, load_average: float | None, cpus: int | None) -> float:
    """How much slower than alone something timed on a CPU ran: by the share of the CPU its threads got (cpu_share)
    where known, else by the machine's load average then (cpu_slowdown), which trails a change by about a minute."""
    if share:
        return 1 / max(MIN_SHARE, min(1.0, share))
    return cpu_slowdown(load_average, cpus)
