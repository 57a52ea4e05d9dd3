"""Which checkpoint a training run resumes from.

Used by the training script. A run restarted with the same output_dir continues from its newest checkpoint
that was written to the end: a run killed while saving leaves a checkpoint folder with
its weights cut short or without its trainer state, and resuming from that one would
fail (or, worse, load half a model), so it is named and skipped. A disk that fills up
while a checkpoint is saved ends the run with one line saying how much a checkpoint
needs, instead of the writer's traceback; the half-written checkpoint is skipped then too.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import re
import shutil
import zipfile
from pathlib import Path

from safetensors import safe_open
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .errors import CtcforgeError
from .repo_files import has_weights

logger = logging.getLogger(__name__)

# The Trainer's own state beside the weights, each written by torch.save: a zip archive whose
# directory is at its end, so opening it catches a file cut short without reading gigabytes
# of optimizer state. Any of them unreadable breaks the resume as surely as the weights.
TRAINER_STATE_FILES = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state*.pth")


def checkpoint_to_resume(training_args, overwrite_output_dir: bool) -> str | None:
    """The checkpoint training continues from: the one asked for, else the newest complete
    one in output_dir (unless --overwrite_output_dir), else None."""
    if training_args.resume_from_checkpoint is not None:
        return training_args.resume_from_checkpoint
    output_dir = Path(training_args.output_dir)
    if not training_args.do_train or overwrite_output_dir or not output_dir.is_dir():
        return None
    checkpoint = last_complete_checkpoint(output_dir)
    if checkpoint is not None:
        logger.info(f"Resuming from {checkpoint}; pass --overwrite_output_dir to start afresh.")
        return str(checkpoint)
    if has_weights(output_dir):
        raise CtcforgeError(
            f"{output_dir} already holds a trained model and no checkpoint to resume from; "
            "pass --overwrite_output_dir to replace it, or choose another --output_dir."
        )
    return None


def last_complete_checkpoint(output_dir: Path) -> Path | None:
    """The newest checkpoint-N folder that was written to the end, warning about newer
    ones that were not."""
    pattern = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
    steps = {
        int(match.group(1)): path
        for path in output_dir.iterdir()
        if path.is_dir() and (match := pattern.match(path.name))
    }
    for step in sorted(steps, reverse=True):
        problem = checkpoint_problem(steps[step])
        if problem is None:
            return steps[step]
        logger.warning(f"Skipping {steps[step]}: {problem}; trying the one before it.")
    return None


def checkpoint_problem(checkpoint: Path) -> str | None:
    """Why a checkpoint cannot be resumed from, or None when it looks complete."""
    # The Trainer writes trainer_state.json last, after the weights, optimizer and scheduler.
    state_file = checkpoint / "trainer_state.json"
    if not state_file.is_file():
        return "no trainer_state.json (saving was interrupted)"
    try:
        json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return f"trainer_state.json does not parse ({error})"
    weights = sorted(checkpoint.glob("*.safetensors"))
    if not weights and not (checkpoint / "pytorch_model.bin").is_file():
        return "no model weights"
    for weight_file in weights:
        try:
            # Opening reads and checks the header, which catches a truncated file cheaply.
            with safe_open(str(weight_file), framework="pt"):
                pass
        except Exception as error:  # safetensors raises its own error types
            return f"{weight_file.name} does not load ({error})"
    for pattern in TRAINER_STATE_FILES:
        for state in sorted(checkpoint.glob(pattern)):
            try:
                with zipfile.ZipFile(state):
                    pass
            except (OSError, zipfile.BadZipFile) as error:
                return f"{state.name} is cut short or damaged ({error})"
    return None


# How a full disk shows through the writers the Trainer saves with: OSError ENOSPC from
# Python and safetensors, "file write failed" from torch.save's zip writer.
DISK_FULL_SIGNS = ("No space left on device", "os error 28", "file write failed")


@contextlib.contextmanager
def explain_full_disk(output_dir: Path, trainer):
    """Turns a full disk while training saves into one line: where, how much is free, and
    how much a checkpoint needs (the weights and the optimizer state)."""
    try:
        yield
    except Exception as error:  # noqa: BLE001 - every other error goes on as it came
        if not disk_is_full(error):
            raise
        weights, optimizer_state = checkpoint_bytes(trainer.model, trainer.optimizer)
        free = shutil.disk_usage(output_dir).free
        unfinished = [path.name for path in Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*")
                      if checkpoint_problem(path) is not None]
        raise CtcforgeError(
            f"the disk holding {output_dir} is full ({megabytes(free)} free): a checkpoint needs about "
            f"{megabytes(weights + optimizer_state)} ({megabytes(weights)} of weights and {megabytes(optimizer_state)} "
            f"of optimizer state); free that much (or lower --save_total_limit, or give an --output_dir on another "
            f"disk) and run the same command again, which resumes from the last complete checkpoint"
            + (f" and skips the unfinished {', '.join(sorted(unfinished))}" if unfinished else "")
        ) from None


def disk_is_full(error: BaseException) -> bool:
    """Whether `error`, or an error it came from, says the disk is full."""
    while error is not None:
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return True
        if any(sign in str(error) for sign in DISK_FULL_SIGNS):
            return True
        error = error.__cause__ or error.__context__
    return False


def checkpoint_bytes(model, optimizer) -> tuple[int, int]:
    """(weights, optimizer state) in bytes, as a checkpoint stores them: every tensor of the
    model's state dict, and the optimizer's per-parameter state (for AdamW two tensors the
    size of each trained parameter, counted as that when no step has made them yet)."""
    weights = sum(tensor.numel() * tensor.element_size() for tensor in model.state_dict().values())
    state = optimizer.state_dict()["state"] if optimizer is not None else {}
    optimizer_state = sum(value.numel() * value.element_size() for parameter_state in state.values()
                          for value in parameter_state.values() if hasattr(value, "numel"))
    if not state:
        optimizer_state = 2 * sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return weights, optimizer_state


def megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
