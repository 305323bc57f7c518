"""How many CPU threads a process should use, so that shared machines are not oversubscribed.

torch starts one intra-op thread per core it can see. On a node shared with other jobs that is
too many: with one core busy elsewhere, two threads on two cores made the demo 5x slower (448 s
against 92 s with one thread), because every parallel op waits for its slowest thread. So
``trainer.threads=auto`` (the default) counts the cores this process may run on (its CPU
affinity, which SLURM and taskset set), shares them among the ranks of this node (torchrun's
``LOCAL_WORLD_SIZE``), and leaves out the cores other processes keep busy right now (measured
from ``/proc/stat`` over a fifth of a second: load averages remember finished jobs for minutes,
which would throttle the next job of a sweep). An ``OMP_NUM_THREADS`` in the environment is the
user's own choice and wins over ``auto``; an integer ``trainer.threads`` is taken as it is.

The choice is logged and recorded in the run's environment.json. It changes float rounding
(a reduction split over 1 or 2 threads sums in another order) but not what a run computes, so
it is not part of the run identity, like the device.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch

SAMPLE_S = 0.2


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    reason: str


def usable_cores() -> list[int]:
    """The CPUs this process may run on (all of them where affinity is unknown)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _cpu_times(cores: list[int]) -> tuple[float, float] | None:
    """(busy, total) jiffies summed over ``cores``, from /proc/stat; None where it cannot be read."""
    try:
        lines = open("/proc/stat").read().splitlines()
    except OSError:
        return None
    wanted, busy, total = {f"cpu{c}" for c in cores}, 0.0, 0.0
    for line in lines:
        name, *fields = line.split()
        if name in wanted:
            values = [float(v) for v in fields[:8]]
            idle = values[3] + values[4]  # idle + iowait
            total += sum(values)
            busy += sum(values) - idle
    return (busy, total) if total else None


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def busy_elsewhere(cores: list[int], sample_s: float = SAMPLE_S) -> float | None:
    """Cores' worth of CPU time other processes used over ``sample_s`` (None where unmeasurable)."""
    first, own = _cpu_times(cores), _own_cpu_seconds()
    if first is None:
        return None
    time.sleep(sample_s)
    second, own = _cpu_times(cores), _own_cpu_seconds() - own
    if second is None or second[1] <= first[1]:
        return None
    share = (second[0] - first[0]) / (second[1] - first[1])  # busy fraction of the sampled cores
    return max(0.0, share * len(cores) - own / sample_s)


def choose_threads(setting: str | int, *, environ: dict[str, str] | None = None,
                   busy: float | None = None, cores: list[int] | None = None) -> ThreadChoice:
    """The thread count for ``trainer.threads`` (``auto`` or a positive integer)."""
    if str(setting) != "auto":
        return ThreadChoice(int(setting), "trainer.threads")
    env = os.environ if environ is None else environ
    if (env.get("OMP_NUM_THREADS") or "").strip().isdigit() and int(env["OMP_NUM_THREADS"]) > 0:
        return ThreadChoice(int(env["OMP_NUM_THREADS"]), "auto: OMP_NUM_THREADS is set")  # the user's own choice
    cores = usable_cores() if cores is None else cores
    ranks = max(1, int(env.get("LOCAL_WORLD_SIZE") or env.get("SLURM_NTASKS_PER_NODE", "1").split("(")[0] or 1))
    share = max(1, len(cores) // ranks)
    if busy is None:
        busy = busy_elsewhere(cores)
    free = share if busy is None else max(1, min(share, round(len(cores) - busy) // ranks))
    parts = [f"{len(cores)} usable cores"]
    if ranks > 1:
        parts.append(f"shared by {ranks} ranks on this node")
    if busy is not None and free < share:
        parts.append(f"{busy:.1f} busy with other processes")
    return ThreadChoice(free, "auto: " + ", ".join(parts))


def apply_threads(setting: str | int) -> ThreadChoice:
    """Set torch's intra-op threads from ``trainer.threads``; returns what was chosen and why."""
    choice = choose_threads(setting)
    torch.set_num_threads(choice.threads)
    return choice
