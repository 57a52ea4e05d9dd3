"""How many threads torch computes with when the training script trains on the CPU.

Used by the training script. torch starts one compute thread per core, and each operation waits for all of
them to finish their share. On a machine whose cores other jobs are using, the thread that
the scheduler put aside holds up the others at every operation, so training slows far more
than the share of the CPU it lost: on 2 busy cores, one thread trained 3 to 4 times as fast
as two (bench/README.md). A single thread slows only in proportion. So, by
default, a run takes the cores that other jobs leave free, and at least one;
`--torch_threads` (or OMP_NUM_THREADS) decides instead. The busy cores are measured over
the half second before training starts (/proc/stat), not read from the 1-minute load
average: that one still counts the work this run itself did a moment ago (preparing the
data, or the demo's synthesis) and would leave a quiet machine's cores unused.
bench/train_throughput.py --threads-under-load measures the two on a busy machine.
"""

from __future__ import annotations

import math
import os
import time

# How long the CPUs' idle time is watched to tell how many other jobs are using them.
SAMPLE_SECONDS = 0.5


def usable_cpus() -> int:
    """The CPUs this process may run on (a container or taskset may allow fewer than exist)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def busy_cpus(seconds: float = SAMPLE_SECONDS) -> float:
    """How many CPUs' worth of work other processes did over the next `seconds` (this one
    is asleep meanwhile), from /proc/stat's counters; the 1-minute load average where there
    is no /proc/stat."""
    def counters() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle and iowait
        return sum(fields[:8]), idle

    try:
        total_before, idle_before = counters()
        time.sleep(seconds)
        total_after, idle_after = counters()
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0]
    elapsed = total_after - total_before
    if elapsed <= 0:
        return os.getloadavg()[0]
    return (os.cpu_count() or 1) * (1 - (idle_after - idle_before) / elapsed)


def free_cpus(usable: int, load: float) -> int:
    """The CPUs that `load` busy CPUs leave free, rounded, at least 1."""
    return max(1, min(usable, math.floor(usable - load + 0.5)))


def choose_threads(requested: int | None) -> tuple[int | None, str]:
    """(threads to set, or None to leave torch's choice, and the reason, for the log)."""
    if requested is not None:
        return requested, f"{requested} (--torch_threads)"
    if os.environ.get("OMP_NUM_THREADS"):
        return None, f"{os.environ['OMP_NUM_THREADS']} (OMP_NUM_THREADS)"
    usable, load = usable_cpus(), busy_cpus()
    threads = free_cpus(usable, load)
    return threads, (f"{threads} of {usable} CPUs, other jobs keeping {load:.1f} busy (--torch_threads "
                     "chooses another number)")


def set_torch_threads(requested: int | None, processes: int) -> str:
    """Sets torch's compute threads for a CPU run of `processes` processes and says how many
    and why. With several processes, accelerate shares the cores out itself, unless told."""
    import torch

    if requested is None and processes > 1:
        return f"torch threads: {torch.get_num_threads()} per process ({processes} processes share the CPUs)"
    threads, reason = choose_threads(requested)
    if threads is not None:
        torch.set_num_threads(threads)
    return f"torch threads: {reason}"
