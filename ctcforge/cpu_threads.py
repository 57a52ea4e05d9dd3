"""How many threads torch computes with when the training script trains on the CPU.

This file is copied unchanged into every generated repo, where run_speech_recognition_ctc.py
imports it. torch starts one compute thread per core, and each operation waits for all of
them to finish their share. On a machine whose cores other jobs are using, the thread that
the scheduler put aside holds up the others at every operation, so training slows far more
than the share of the CPU it lost: on 2 busy cores, one thread trained 3 to 4 times as fast
as two (bench/README.md). A single thread slows only in proportion. So, by
default, a run takes the cores the load already there leaves free (the 1-minute load
average), and at least one; `--torch_threads` (or OMP_NUM_THREADS) decides instead.
bench/train_throughput.py --threads-under-load measures the two on a busy machine.
"""

from __future__ import annotations

import math
import os


def usable_cpus() -> int:
    """The CPUs this process may run on (a container or taskset may allow fewer than exist)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def free_cpus(usable: int, load: float) -> int:
    """The CPUs that a load average of `load` leaves free, rounded, at least 1."""
    return max(1, min(usable, math.floor(usable - load + 0.5)))


def choose_threads(requested: int | None) -> tuple[int | None, str]:
    """(threads to set, or None to leave torch's choice, and the reason, for the log)."""
    if requested is not None:
        return requested, f"{requested} (--torch_threads)"
    if os.environ.get("OMP_NUM_THREADS"):
        return None, f"{os.environ['OMP_NUM_THREADS']} (OMP_NUM_THREADS)"
    usable, load = usable_cpus(), os.getloadavg()[0]
    threads = free_cpus(usable, load)
    return threads, (f"{threads} of {usable} CPUs, the load average being {load:.1f} (--torch_threads "
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
