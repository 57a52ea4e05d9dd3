"""The learning-rate schedule of a training run, and its wall-clock budget.

Used by the training script. It holds fairseq's tristage schedule (--lr_scheduler_type tristage), which the
wav2vec 2.0 recipes use and transformers does not have, and --max_train_minutes: a clock
that stops training when the budget is spent and that the schedule follows, so a run
warms up and decays within its budget rather than within a step count it never reaches.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from typing import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR
from transformers import TrainerCallback, get_scheduler

from .errors import CtcforgeError

logger = logging.getLogger(__name__)

TRISTAGE = "tristage"
# fairseq's tri_stage defaults: warm up from 1% of the learning rate, decay to 5% of it.
TRISTAGE_INIT_LR_SCALE = 0.01
TRISTAGE_FINAL_LR_SCALE = 0.05


def tristage_lr_scale(step: int, warmup_steps: int, hold_steps: int, decay_steps: int,
                      init_lr_scale: float, final_lr_scale: float) -> float:
    """The learning rate before optimizer step `step`, as a fraction of the peak, following
    fairseq's `tri_stage`: a linear warm-up from `init_lr_scale` to 1, a hold at 1, an
    exponential decay to `final_lr_scale`, and `final_lr_scale` for any steps left over."""
    if step < warmup_steps:
        return init_lr_scale + (1 - init_lr_scale) * step / warmup_steps
    step -= warmup_steps
    if step < hold_steps:
        return 1.0
    step -= hold_steps
    if step < decay_steps:
        # exp(-k * step), with k chosen so that the decay ends exactly at final_lr_scale.
        return final_lr_scale ** (step / decay_steps)
    return final_lr_scale


def check_tristage(ratios: list[float], init_lr_scale: float, final_lr_scale: float) -> None:
    """Raises ValueError, naming the option to fix, for settings tristage cannot follow."""
    if len(ratios) != 3 or min(ratios) < 0:
        raise ValueError("--lr_scheduler_ratios takes three shares: warm-up, hold and decay")
    if abs(sum(ratios) - 1) > 1e-6:
        raise ValueError(f"--lr_scheduler_ratios {ratios} must add up to 1")
    if not (0 <= init_lr_scale <= 1 and 0 < final_lr_scale <= 1):
        raise ValueError("--init_lr_scale must be in [0, 1] and --final_lr_scale in (0, 1]")


def tristage_lambda(num_training_steps: int, ratios: list[float],
                    init_lr_scale: float = TRISTAGE_INIT_LR_SCALE,
                    final_lr_scale: float = TRISTAGE_FINAL_LR_SCALE) -> Callable[[int], float]:
    """tristage over `num_training_steps`, split in the `ratios` shares (warm-up, hold, decay)."""
    # Floored, as fairseq does, but forgiving float noise: 100 * 0.29 is 28.999999999999996.
    warmup_steps, hold_steps, decay_steps = (math.floor(num_training_steps * ratio + 1e-6) for ratio in ratios)
    return functools.partial(tristage_lr_scale, warmup_steps=warmup_steps, hold_steps=hold_steps,
                             decay_steps=decay_steps, init_lr_scale=init_lr_scale,
                             final_lr_scale=final_lr_scale)


def tristage_schedule(optimizer: torch.optim.Optimizer, num_training_steps: int, ratios: list[float],
                      init_lr_scale: float = TRISTAGE_INIT_LR_SCALE,
                      final_lr_scale: float = TRISTAGE_FINAL_LR_SCALE) -> LambdaLR:
    """The tristage schedule as a LambdaLR, so checkpoints save and restore it like any other."""
    return LambdaLR(optimizer, tristage_lambda(num_training_steps, ratios, init_lr_scale, final_lr_scale))


class TrainingClock(TrainerCallback):
    """The wall-clock budget of one run (--max_train_minutes): it tells the schedule how much
    of the budget is used, and stops training when all of it is."""

    def __init__(self, minutes: float):
        self.budget_s = minutes * 60
        self.started: float | None = None

    def used(self) -> float:
        """The share of the budget used so far, from 0 to 1 (0 before training starts)."""
        if self.started is None:
            return 0.0
        return min(1.0, (time.monotonic() - self.started) / self.budget_s)

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if self.used() >= 1.0 and not control.should_training_stop:
            logger.info(f"--max_train_minutes {self.budget_s / 60:g} reached after {state.global_step} steps")
            control.should_training_stop = True
        return control


def follow_clock(lr_lambda, clock: TrainingClock, num_training_steps: int):
    """`lr_lambda` driven by whichever is further along: the optimizer steps taken, or the
    share of the time budget used, counted in steps of a `num_training_steps` run."""

    def scale(step: int) -> float:
        return lr_lambda(max(step, int(clock.used() * num_training_steps)))

    return scale


def learning_rate_schedule(args, optimizer: torch.optim.Optimizer, num_training_steps: int,
                           clock: TrainingClock | None = None) -> torch.optim.lr_scheduler.LRScheduler:
    """The schedule `args` asks for: tristage, or any of transformers' own by name, made to
    follow `clock` when there is one."""
    if args.lr_scheduler_type == TRISTAGE:
        lr_lambda = tristage_lambda(num_training_steps, args.lr_scheduler_ratios, args.init_lr_scale,
                                    args.final_lr_scale)
        if clock is not None:
            lr_lambda = follow_clock(lr_lambda, clock, num_training_steps)
        return LambdaLR(optimizer, lr_lambda)
    scheduler = get_scheduler(args.lr_scheduler_type, optimizer=optimizer,
                              num_warmup_steps=args.get_warmup_steps(num_training_steps),
                              num_training_steps=num_training_steps,
                              scheduler_specific_kwargs=args.lr_scheduler_kwargs)
    if clock is None:
        return scheduler
    if not isinstance(scheduler, LambdaLR):
        raise CtcforgeError(f"--max_train_minutes needs a step-based schedule such as linear or "
                         f"tristage, not {args.lr_scheduler_type}")
    # transformers' schedules are LambdaLRs over the step; a new one over the same function,
    # fed the clock's step, follows the budget (lr_lambdas is LambdaLR's public list of them).
    return LambdaLR(optimizer, [follow_clock(f, clock, num_training_steps) for f in scheduler.lr_lambdas])
